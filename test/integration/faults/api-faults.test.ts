import type * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeApiServer, type WatchFault } from '../../support/fake-apiserver/index.js';
import { startPodResources, until } from '../agent/support.js';

/**
 * Real `agent` and `operator` processes, each against its own fake API server, under the API faults a
 * real cluster has (issue 17): every watch answered 200 with an empty body (a load balancer closing long
 * requests), every watch answered with a 410 (compacted history after an API server restart), and watches
 * failing with 500 or 403 (the role lacks `watch`) while lists work.
 *
 * The bound. client-go's reflector waits a backoff (800 ms doubling to 30 s, jittered) before every
 * relist and after every failed or "very short" watch. Over a WINDOW_S window that is at most ~5 list+watch
 * cycles per watched resource. The agent watches one resource (≈ 2 requests a cycle), the operator three
 * (Nodes, GpuPassthroughs, NodeGpuPassthroughs). The bound allows about three times the backoff schedule,
 * for the generous slack a busy CI machine needs and for cycles already in flight when the fault starts:
 * a fault that is not backed off sends hundreds of requests per second and exceeds it by two orders of
 * magnitude, so the assertion can fail and still never flakes on a slow machine (counts, not timings).
 */
const WINDOW_S = 8;
const AGENT_BOUND = 30; // list + watch requests per window
const OPERATOR_BOUND = 90; // 3 informers × 30
const CLI = join(process.cwd(), 'dist/cli/main.js');
const NODE = 'worker-3';
const RATES_FILE = process.env['VH_FAULT_RATES_FILE'];

interface Proc {
  child: ChildProcess;
  stderr: string;
}

function start(args: string[]): Proc {
  const p: Proc = { child: spawn(process.execPath, [CLI, ...args]), stderr: '' };
  p.child.stderr?.on('data', (d: Buffer) => (p.stderr += d.toString()));
  p.child.stdout?.on('data', (d: Buffer) => (p.stderr += d.toString()));
  return p;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function sum(counts: Record<string, number>, pred: (key: string) => boolean): number {
  return Object.entries(counts)
    .filter(([k]) => pred(k))
    .reduce((n, [, v]) => n + v, 0);
}

describe('agent and operator processes under API faults (issue 17)', () => {
  let agentApi: FakeApiServer;
  let opApi: FakeApiServer;
  let dir: string;
  let podResources: grpc.Server;
  let agent: Proc;
  let operator: Proc;

  // Fresh processes for every fault: backoff grown during one fault must not hide the next one's rate.
  beforeEach(async () => {
    if (!existsSync(CLI)) throw new Error('dist/cli/main.js missing: npm test builds first');
    dir = await mkdtemp(join(tmpdir(), 'vh-faults-'));
    agentApi = await FakeApiServer.start({ logRequests: false });
    opApi = await FakeApiServer.start({ logRequests: false });
    agentApi.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
    for (let i = 0; i < 3; i++) opApi.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: `n${i}`, labels: { gpu: 'yes' } } });
    opApi.seed('handoff.dev', 'v1alpha1', 'gpupassthroughs', {
      apiVersion: 'handoff.dev/v1alpha1',
      kind: 'GpuPassthrough',
      metadata: { name: 'vms' },
      spec: { nodeSelector: { matchLabels: { gpu: 'yes' } }, resourceName: 'example.com/gpu' },
    });
    await writeFile(join(dir, 'agent.kubeconfig'), agentApi.kubeConfig().exportConfig());
    await writeFile(join(dir, 'operator.kubeconfig'), opApi.kubeConfig().exportConfig());
    podResources = await startPodResources(join(dir, 'pod-resources.sock'), () => []);
    agent = start([
      'agent', '--profile', 'server-aspeed-4xh100', '--node-name', NODE, '--kubeconfig', join(dir, 'agent.kubeconfig'),
      '--device-plugin', 'off', '--resource-names-file', join(dir, 'names.json'), '--pod-resources-socket', join(dir, 'pod-resources.sock'),
      '--state-dir', join(dir, 'state'), '--metrics-addr', '127.0.0.1:0', '--resync-interval', '10m',
    ]);
    operator = start(['operator', '--kubeconfig', join(dir, 'operator.kubeconfig'), '--metrics-addr', '127.0.0.1:0', '--leader-elect', 'false']);
    await until('agent inventory', () => (agentApi.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', NODE)?.['status'] as { inventory?: unknown } | undefined)?.inventory, 30_000);
    await until('operator status', () => opApi.object('handoff.dev', 'v1alpha1', 'gpupassthroughs', 'vms')?.['status'], 30_000);
    await until('watches open', () => agentApi.openWatches >= 1 && opApi.openWatches >= 3, 30_000);
  }, 60_000);

  afterEach(async () => {
    agent?.child.kill('SIGKILL');
    operator?.child.kill('SIGKILL');
    podResources?.forceShutdown();
    await agentApi?.close();
    await opApi?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs `fault` on both servers for WINDOW_S and returns what each process sent meanwhile. */
  async function measure(name: string, fault: WatchFault) {
    // Let a cycle that started before the fault finish, then count from a clean slate.
    agentApi.setWatchFault(fault);
    opApi.setWatchFault(fault);
    const agentLines0 = agent.stderr.split('\n').length;
    const opLines0 = operator.stderr.split('\n').length;
    agentApi.dropWatches();
    opApi.dropWatches();
    agentApi.resetRequestLog();
    opApi.resetRequestLog();
    await sleep(WINDOW_S * 1000);
    const a = agentApi.counts();
    const o = opApi.counts();
    agentApi.setWatchFault(undefined);
    opApi.setWatchFault(undefined);
    const agentLogs = agent.stderr.split('\n').slice(agentLines0 - 1);
    const opLogs = operator.stderr.split('\n').slice(opLines0 - 1);
    const m = {
      agent: {
        listWatch: sum(a, (k) => k.startsWith('list ') || k.startsWith('watch ')),
        gets: sum(a, (k) => k.startsWith('get ')),
        total: sum(a, () => true),
        logLines: agentLogs.filter((l) => l.trim()).length,
      },
      operator: {
        listWatch: sum(o, (k) => k.startsWith('list ') || k.startsWith('watch ')),
        total: sum(o, () => true),
        logLines: opLogs.filter((l) => l.trim()).length,
      },
      agentLogs,
      opLogs,
    };
    const line = `${name}: over ${WINDOW_S} s agent ${JSON.stringify(m.agent)} operator ${JSON.stringify(m.operator)}`;
    console.log(line);
    if (RATES_FILE) await appendFile(RATES_FILE, `${line}\n`);
    return m;
  }

  it('watches answered 200 with an empty body: both processes back off and say the watch keeps ending', async () => {
    const m = await measure('empty watch', { kind: 'empty' });
    expect(m.agent.listWatch).toBeLessThanOrEqual(AGENT_BOUND);
    expect(m.operator.listWatch).toBeLessThanOrEqual(OPERATOR_BOUND);
    expect(m.agentLogs.join('\n')).toMatch(/watch keeps ending/);
    expect(m.opLogs.join('\n')).toMatch(/watch keeps ending/);
  }, 60_000);

  it('410 on every watch: relists are backed off and a relist that changed nothing runs no host pass', async () => {
    const m = await measure('410 on watch', { kind: 'gone' });
    expect(m.agent.listWatch).toBeLessThanOrEqual(AGENT_BOUND);
    expect(m.operator.listWatch).toBeLessThanOrEqual(OPERATOR_BOUND);
    // A pass GETs the agent's object: nothing changed, so no pass ran.
    expect(m.agent.gets).toBe(0);
  }, 60_000);

  it('watch 500 while list works: the agent backs off like the operator', async () => {
    const m = await measure('watch 500', { kind: 'status', status: 500 });
    expect(m.agent.listWatch).toBeLessThanOrEqual(AGENT_BOUND);
    expect(m.operator.listWatch).toBeLessThanOrEqual(OPERATOR_BOUND);
    expect(m.agent.gets).toBe(0);
    expect(m.agent.logLines).toBeLessThanOrEqual(10);
  }, 60_000);

  it('watch 403 (the role lacks watch): backed off, and the missing permission is named once', async () => {
    const m = await measure('watch 403', { kind: 'status', status: 403 });
    expect(m.agent.listWatch).toBeLessThanOrEqual(AGENT_BOUND);
    expect(m.operator.listWatch).toBeLessThanOrEqual(OPERATOR_BOUND);
    const named = (logs: string[]) => logs.filter((l) => /lacks the \\?"watch\\?" verb/.test(l));
    expect(named(m.agentLogs)).toHaveLength(1);
    expect(named(m.agentLogs)[0]).toMatch(/nodegpupassthroughs\.handoff\.dev/);
    // The operator watches three resources: one line for each.
    expect(named(m.opLogs).length).toBeGreaterThanOrEqual(1);
    expect(named(m.opLogs).length).toBeLessThanOrEqual(3);
  }, 60_000);

  it('recovers after the fault: a spec change reaches the agent, a new node reaches the operator', async () => {
    await measure('empty watch (before recovery)', { kind: 'empty' });
    const obj = agentApi.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', NODE)!;
    agentApi.seed('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', { ...obj, spec: { gpus: [{ address: '0000:18:00.0', resourceName: 'example.com/h100', policy: 'vms' }] } });
    // Backoff may have grown to its 30 s cap during the faults; the watch resumes within it.
    await until(
      'agent prepared the GPU',
      () => ((agentApi.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', NODE)?.['status'] as { gpus?: { address: string; phase: string }[] } | undefined)?.gpus ?? []).some((g) => g.address === '0000:18:00.0' && g.phase === 'Ready'),
      45_000,
    );
    opApi.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n9', labels: { gpu: 'yes' } } });
    await until('operator saw the new node', () => (opApi.object('handoff.dev', 'v1alpha1', 'gpupassthroughs', 'vms')?.['status'] as { nodesMatched?: number } | undefined)?.nodesMatched === 4, 45_000);
  }, 120_000);
});
