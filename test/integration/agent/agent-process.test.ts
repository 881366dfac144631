import type * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeGpuPassthrough } from '../../../src/api/v1alpha1/index.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';
import { FakeKubelet } from '../../support/fake-kubelet.js';
import { startPodResources, until } from './support.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
const NODE = 'worker-7';

describe('vfio-handoff agent (real process, simulated host, fake cluster and kubelet)', () => {
  let api: FakeApiServer;
  let kubelet: FakeKubelet;
  let podResources: grpc.Server;
  let dir: string;
  let agent: ChildProcess;
  let stderr = '';
  let held: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error('dist/cli/main.js missing: npm test builds first');
    dir = await mkdtemp(join(tmpdir(), 'vh-agent-'));
    api = await FakeApiServer.start();
    api.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
    await writeFile(join(dir, 'kubeconfig'), api.kubeConfig().exportConfig());
    const pluginDir = join(dir, 'device-plugins');
    await mkdir(pluginDir);
    kubelet = await FakeKubelet.start(pluginDir);
    podResources = await startPodResources(join(dir, 'pod-resources.sock'), () => held);
    agent = spawn(process.execPath, [
      CLI, 'agent', '--profile', 'server-aspeed-4xh100', '--node-name', NODE, '--kubeconfig', join(dir, 'kubeconfig'),
      '--device-plugin-dir', pluginDir, '--pod-resources-socket', join(dir, 'pod-resources.sock'),
      '--state-dir', join(dir, 'state'), '--metrics-addr', '127.0.0.1:0', '--resync-interval', '1s', '--log-level', 'debug',
    ]);
    agent.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  });

  afterAll(async () => {
    agent?.kill('SIGKILL');
    podResources?.forceShutdown();
    await kubelet?.close();
    await api?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const nodeObject = () => api.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', NODE) as unknown as NodeGpuPassthrough | undefined;
  const phaseOf = (address: string) => nodeObject()?.status?.gpus?.find((g) => g.address === address);

  it('creates its node object and reports the inventory', async () => {
    const inv = await until('inventory', () => nodeObject()?.status?.inventory);
    expect(inv.map((g) => g.address)).toContain('0000:18:00.0');
  });

  it('prepares the GPU the spec asks for, advertises it under the policy\u2019s resource name, and Allocate carries the KubeVirt env', async () => {
    const obj = nodeObject()!;
    api.seed('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', {
      ...(obj as unknown as Record<string, unknown>),
      spec: { gpus: [{ address: '0000:18:00.0', resourceName: 'example.com/h100', policy: 'vm-gpus' }] },
    });
    await until('Ready', () => phaseOf('0000:18:00.0')?.phase === 'Ready');
    await kubelet.waitFor(() => kubelet.healthy('example.com/h100').includes('0000:18:00.0'), 10_000, 'device advertised');
    const res = await kubelet.allocate('example.com/h100', [['0000:18:00.0']]);
    const c = res.container_responses[0]!;
    expect(c.envs).toEqual({ PCI_RESOURCE_EXAMPLE_COM_H100: '0000:18:00.0' });
    expect(c.devices.map((d) => d.host_path)).toEqual(expect.arrayContaining(['/dev/vfio/vfio', '/dev/vfio/31']));
  });

  it('serves metrics that count the Ready GPU', async () => {
    const line = await until('metrics address', () => stderr.split('\n').find((l) => l.includes('metrics listening')));
    const port = (JSON.parse(line) as { metrics: { port: number } }).metrics.port;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).toMatch(/vfio_handoff_gpus\{phase="Ready",resource="example.com\/h100"\} 1/);
    expect(text).toMatch(/vfio_handoff_plugin_registered\{resource="example.com\/h100"\} 1/);
  });

  it('does not release a GPU a pod holds when the spec drops it', async () => {
    held = ['0000:18:00.0'];
    const obj = nodeObject()!;
    api.seed('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', { ...(obj as unknown as Record<string, unknown>), spec: { gpus: [] } });
    await until('Releasing/InUse', () => phaseOf('0000:18:00.0')?.reason === 'InUse');
    expect(phaseOf('0000:18:00.0')?.phase).toBe('Releasing');
    // The status names the pod (issue 17) and keeps the resource name, so the operator can show the GPU
    // under the policy it is leaving.
    expect(phaseOf('0000:18:00.0')?.message).toBe('in use by pod vms/virt-launcher-vm1; released when the pod ends');
    expect(phaseOf('0000:18:00.0')?.resourceName).toBe('example.com/h100');
  });

  it('stops cleanly on SIGTERM without releasing anything', async () => {
    const exited = new Promise<number | null>((resolve) => agent.on('exit', (code) => resolve(code)));
    agent.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toContain('GPU bindings left as they are');
    // Debug logs show every executed step: prepare's are there (the check can see steps), no release step is.
    expect(stderr).toMatch(/"kind":"set-override"/);
    expect(stderr).not.toMatch(/"kind":"clear-override"/);
  });
});
