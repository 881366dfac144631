/**
 * Issue 6, least privilege: `agent --device-plugin off` serves no gRPC and hands the resource names of its
 * spec to the unprivileged `plugin` through a file. Two processes cannot share one simulated kernel, so the
 * agent runs over `--profile` and the plugin over a materialised host tree; the file is the seam between them.
 */
import type * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatResourceNames, parseResourceNames, type ResourceNamesDocument } from '../../../src/devices/resource-names-file.js';
import type { NodeGpuPassthrough } from '../../../src/operator/api.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { writeFileAtomic } from '../../../src/state/resource-names-file.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';
import { FakeKubelet } from '../../support/fake-kubelet.js';
import { startPodResources, until } from './support.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
const NODE = 'worker-9';
const GPU = '0000:18:00.0';

function spawnCli(args: string[]): { proc: ChildProcess; output: () => string } {
  const proc = spawn(process.execPath, [CLI, ...args]);
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, output: () => out };
}

async function stop(proc: ChildProcess | undefined): Promise<number | null> {
  if (!proc || proc.exitCode !== null) return proc?.exitCode ?? null;
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  proc.kill('SIGTERM');
  return exited;
}

async function readNames(path: string): Promise<ResourceNamesDocument | undefined> {
  try {
    return parseResourceNames(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

describe.runIf(existsSync(CLI))('agent --device-plugin off (real process, simulated host, fake cluster)', () => {
  let api: FakeApiServer;
  let kubelet: FakeKubelet;
  let podResources: grpc.Server;
  let dir: string;
  let agent: ReturnType<typeof spawnCli>;
  let namesFile: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-split-agent-'));
    namesFile = join(dir, 'shared', 'resource-names.json');
    api = await FakeApiServer.start();
    api.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
    await writeFile(join(dir, 'kubeconfig'), api.kubeConfig().exportConfig());
    const pluginDir = join(dir, 'device-plugins');
    await mkdir(pluginDir);
    // A kubelet is listening: an agent that still served the device plugin would register with it.
    kubelet = await FakeKubelet.start(pluginDir);
    podResources = await startPodResources(join(dir, 'pod-resources.sock'), () => []);
    agent = spawnCli([
      'agent', '--profile', 'server-aspeed-4xh100', '--node-name', NODE, '--kubeconfig', join(dir, 'kubeconfig'),
      '--device-plugin', 'off', '--resource-names-file', namesFile, '--device-plugin-dir', pluginDir,
      '--pod-resources-socket', join(dir, 'pod-resources.sock'), '--state-dir', join(dir, 'state'),
      '--metrics-addr', '127.0.0.1:0', '--resync-interval', '1s', '--log-level', 'debug', // debug: handoff steps are logged
    ]);
  });

  afterAll(async () => {
    agent?.proc.kill('SIGKILL');
    podResources?.forceShutdown();
    await kubelet?.close();
    await api?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const nodeObject = () => api.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', NODE) as unknown as NodeGpuPassthrough | undefined;

  it('publishes an empty name set after its first pass, and is ready without a device plugin', async () => {
    const first = await until('names file', () => readNames(namesFile));
    expect(first.names.size).toBe(0);
    expect(first.generation).toBeGreaterThanOrEqual(1);
    const line = await until('metrics address', () => agent.output().split('\n').find((l) => l.includes('metrics listening')));
    const port = (JSON.parse(line) as { metrics: { port: number } }).metrics.port;
    await until('ready', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200);
  });

  it('writes the resource name the spec asks for, with a new generation once the GPU is prepared', async () => {
    const before = (await readNames(namesFile))!.generation;
    const obj = await until('node object', () => nodeObject());
    api.seed('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', {
      ...(obj as unknown as Record<string, unknown>),
      spec: { gpus: [{ address: GPU, resourceName: 'example.com/h100', policy: 'vm-gpus' }] },
    });
    await until('Ready', () => nodeObject()?.status?.gpus?.find((g) => g.address === GPU)?.phase === 'Ready');
    // Two writes are due: the names before the pass, then the new bindings after it (the plugin rescans on
    // each). The status says Ready before the pass ends, so wait for the second write, not just the first
    // (on a busy machine the file read in between is the first one, and the second is no idle rewrite).
    const publications = (): number => agent.output().split('\n').filter((l) => l.includes('"msg":"published resource names"') && l.includes('"0000:18:00.0":"example.com/h100"')).length;
    await until('names and bindings published', () => publications() >= 2);
    const doc = (await readNames(namesFile))!;
    expect(doc.names.get(GPU as never)).toBe('example.com/h100');
    expect([...doc.names]).toEqual([[GPU, 'example.com/h100']]);
    expect(doc.generation).toBeGreaterThan(before);
    // The name was published before the handoff's first step: the plugin must know it before the GPU is ready.
    const out = agent.output();
    const published = out.search(/"names":\{"0000:18:00\.0":"example\.com\/h100"\}[^\n]*"msg":"published resource names"/);
    const firstStep = out.indexOf('"msg":"step"');
    expect(published).toBeGreaterThanOrEqual(0);
    expect(firstStep).toBeGreaterThan(published);
    // Idle resyncs (every 1 s) do not rewrite an unchanged file. (The pass that prepared the GPU writes once more
    // with the new bindings, possibly after Ready is visible on a busy machine: let that settle first.)
    await new Promise((r) => setTimeout(r, 1_500));
    const settled = (await readNames(namesFile))!.generation;
    await new Promise((r) => setTimeout(r, 2_500));
    expect((await readNames(namesFile))?.generation).toBe(settled);
  });

  it('never registered with kubelet and stops cleanly', async () => {
    expect(kubelet.registerCalls).toEqual([]);
    expect(await stop(agent.proc)).toBe(0);
    expect(agent.output()).not.toContain('device plugin serving');
  });
});

describe.runIf(existsSync(CLI))('plugin --resource-names-file (real process over a materialised host)', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-split-plugin-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A host tree of its own per test (tests change it), a kubelet, and the plugin process following `namesFile`. */
  async function startPlugin(name: string, namesFile: string, extra: string[] = [], prepareHost?: (root: string) => Promise<void>) {
    const hostRoot = join(dir, name, 'host');
    await materialiseProfile(await loadBuiltinProfile('server-aspeed-l40s-vfio'), hostRoot);
    await prepareHost?.(hostRoot);
    const pluginDir = join(dir, name, 'device-plugins');
    await mkdir(pluginDir);
    const kubelet = await FakeKubelet.start(pluginDir);
    const plugin = spawnCli(['plugin', '--host-root', hostRoot, '--device-plugin-dir', pluginDir, '--resource-names-file', namesFile, '--rescan-interval', '200ms', ...extra]);
    return { kubelet, plugin, hostRoot };
  }

  /** The resource kubelet currently sees `address` healthy under, if any. */
  const resourceOf = (kubelet: FakeKubelet, address: string) => kubelet.resourceNames().find((r) => kubelet.healthy(r).includes(address));
  /** Whether any ListAndWatch message of a resource other than `except` ever listed `address`. */
  const everElsewhere = (kubelet: FakeKubelet, address: string, except: string) =>
    kubelet.resourceNames().some((r) => r !== except && kubelet.resource(r)?.updates.some((u) => u.devices.some((d) => d.ID === address)));

  it('survives a bad file (default names, a warning), then advertises a GPU that becomes ready under the name the file gives', async () => {
    const namesFile = join(dir, 'follow-names.json');
    await writeFile(namesFile, '{"version":1,"names":{"0000:18:00.0":"not a resource name"}}');
    // GPU 18:00.0 is not ready yet: its /dev/vfio/31 is missing, as before the agent's handoff finishes.
    const { kubelet, plugin, hostRoot } = await startPlugin('follow', namesFile, [], (root) => rm(join(root, 'dev/vfio/31')));
    try {
      const defaultName = await until('default registration', () => resourceOf(kubelet, '0000:3b:00.0'));
      expect(plugin.output()).toContain('ignoring bad resource names file');
      expect(resourceOf(kubelet, GPU)).toBeUndefined();

      // The agent publishes the spec's name, then the GPU becomes ready.
      await writeFileAtomic(namesFile, formatResourceNames(new Map([[GPU, 'example.com/l40s-vm']]), 1));
      await until('plugin read the file', () => plugin.output().includes('"generation":1'));
      await writeFile(join(hostRoot, 'dev/vfio/31'), '');
      await kubelet.waitFor(() => kubelet.healthy('example.com/l40s-vm').includes(GPU), 10_000, 'GPU registered under the published name');
      expect(kubelet.healthy('example.com/l40s-vm')).toEqual([GPU]);
      expect(everElsewhere(kubelet, GPU, 'example.com/l40s-vm')).toBe(false);
      // The GPUs the file does not name keep their default resource.
      expect(kubelet.healthy(defaultName)).toEqual(['0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0']);

      await rm(namesFile); // a missing file: no overrides, and no crash
      await until('plugin saw the file go', () => plugin.output().includes('no resource names file'));
      expect(plugin.proc.exitCode).toBeNull();
    } finally {
      expect(await stop(plugin.proc)).toBe(0);
      await kubelet.close();
    }
  });

  it('with --resource-names-wait, waits for the agent\u2019s file so kubelet never sees the GPU under its default name', async () => {
    const namesFile = join(dir, 'wait', 'resource-names.json');
    const { kubelet, plugin } = await startPlugin('wait', namesFile, ['--resource-names-wait', '20s']);
    try {
      await new Promise((r) => setTimeout(r, 1_000));
      expect(kubelet.registerCalls).toEqual([]); // still waiting
      await writeFileAtomic(namesFile, formatResourceNames(new Map([[GPU, 'example.com/l40s-vm']]), 1));
      await kubelet.waitFor(() => kubelet.healthy('example.com/l40s-vm').includes(GPU), 10_000, 'registered under the published name');
      await kubelet.waitFor(() => resourceOf(kubelet, '0000:3b:00.0') !== undefined, 10_000, 'the other GPUs under their default name');
      expect(everElsewhere(kubelet, GPU, 'example.com/l40s-vm')).toBe(false);
    } finally {
      expect(await stop(plugin.proc)).toBe(0);
      await kubelet.close();
    }
  });
});
