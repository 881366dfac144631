import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { realClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { ClientNodeKubeApi } from '../kube/index.js';
import { noopReconcileRecorder } from '../metrics/recorders.js';
import type { GpuPassthrough, InventoryGpu } from '../api/v1alpha1/index.js';
import { READY_LABEL } from '../api/v1alpha1/index.js';
import { GPU_PASSTHROUGH_REF } from '../api/v1alpha1/index.js';
import { SimulatedAgents } from '../testing/simulated-agents.js';
import { startOperator } from '../operator/run-operator.js';
import { FakeApiServer } from '../testing/fake-apiserver/index.js';

/**
 * Operator benchmark (issue 5): 1,000 nodes × 8 GPUs on the in-process fake API server, the simulated
 * agents having reported their inventories; then one GpuPassthrough selecting every node is created.
 * Measured: time until every node spec is written, every node labelled ready and the policy status says
 * Ready (the agents answering each spec change at once); operator writes per node (spec patch + label
 * patch; Events and the policy status are not per-node writes and are reported separately); memory.
 *
 * Memory: compiled (`npm run bench`), the operator runs alone in a child process and its own RSS/heap
 * are reported; from vitest it shares the process with the fake API server (which keeps every object and
 * its watch history) and the agents, and the process figures are an upper bound.
 * Goals: converge ≤ 30 s, ≤ 3 writes per node, ≤ 300 MiB.
 */

export interface OperatorBenchOptions {
  nodes?: number;
  gpusPerNode?: number;
  timeoutMs?: number;
  /**
   * `child`: the operator runs in its own process, so its memory is measured alone (needs the compiled
   * .js: `npm run bench`). `inline`: same process as the fake API server (from vitest). Default: child
   * when running compiled.
   */
  operatorProcess?: 'child' | 'inline';
}

export const CHILD_FLAG = '--operator-bench-child';

export interface MemoryReport {
  rss: number;
  heapUsed: number;
  peakRss: number;
}

/** The operator side of the benchmark, alone in a child process; talks to the parent over IPC. */
async function childMain(url: string, token = 'bench', caFile?: string): Promise<void> {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    // The fake API server's certificate is throwaway; the real one (operator-apiserver-bench) is checked.
    clusters: [caFile ? { name: 'fake', server: url, caFile } : { name: 'fake', server: url, skipTLSVerify: true }],
    users: [{ name: 'bench', token }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'bench' }],
    currentContext: 'fake',
  });
  const stop = new AbortController();
  const handle = startOperator(operatorDeps(kubeConfig, stop.signal));
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  while (!handle.ready().ready) await realClock.sleep(20);
  process.send?.({ type: 'ready' });
  process.on('message', (m: { type?: string }) => {
    if (m.type === 'memory') {
      globalThis.gc?.();
      const mem = process.memoryUsage();
      process.send?.({ type: 'memory', rss: mem.rss, heapUsed: mem.heapUsed, peakRss: Math.max(peakRss, mem.rss) } satisfies MemoryReport & { type: string });
    } else if (m.type === 'stop') {
      clearInterval(sampler);
      stop.abort();
      void handle.done.finally(() => process.disconnect());
    }
  });
}

function operatorDeps(kubeConfig: KubeConfig, signal: AbortSignal, api?: ClientNodeKubeApi): Parameters<typeof startOperator>[0] {
  return {
    kubeConfig,
    ...(api ? { api } : {}),
    clock: realClock,
    logger: silentLogger,
    recorder: noopReconcileRecorder,
    leaderElect: false,
    leaseNamespace: 'vfio-handoff',
    identity: 'bench',
    resyncMs: 5 * 60_000,
    signal,
  };
}

export function nextMessage<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: { type?: string }): void => {
      if (m.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m as T);
    };
    const onExit = (code: number | null): void => reject(new Error(`operator child exited (${code}) before sending ${type}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

if (process.argv[2] === CHILD_FLAG && process.argv[3]) void childMain(process.argv[3], process.argv[4], process.argv[5]);

export function inventoryOf(gpus: number): InventoryGpu[] {
  return Array.from({ length: gpus }, (_, g) => ({
    address: `0000:${(0x41 + g).toString(16).padStart(2, '0')}:00.0`,
    vendorId: '10de',
    deviceId: '2331',
    class: '0x030200',
    bootGpu: false,
    iommuGroup: 40 + g,
    numaNode: g < gpus / 2 ? 0 : 1,
  }));
}

const MiB = 1024 * 1024;

export async function runOperatorBench(opts: OperatorBenchOptions = {}): Promise<Record<string, number | string>> {
  const nodes = opts.nodes ?? 1000;
  const gpus = opts.gpusPerNode ?? 8;
  const timeoutMs = opts.timeoutMs ?? 120_000;
  // The request log stays on: per-node write counts come from it.
  const server = await FakeApiServer.start();
  const kubeConfig = server.kubeConfig();
  const api = new ClientNodeKubeApi({ kubeConfig });
  const agents = new SimulatedAgents({ api, kubeConfig, clock: realClock, logger: silentLogger });
  const stop = new AbortController();
  const names = Array.from({ length: nodes }, (_, i) => `node-${String(i).padStart(4, '0')}`);
  const inventory = inventoryOf(gpus);
  for (const name of names) {
    const node = server.seed('', 'v1', 'nodes', { metadata: { name, labels: { 'example.com/gpu': 'h100' } } });
    server.seed('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', {
      // Owned by its Node, as the agent creates it when the Node exists.
      metadata: { name, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name, uid: node.metadata.uid }] },
      spec: { gpus: [], paused: false },
      status: { observedGeneration: 1, inventory, gpus: [] },
    });
    agents.register(name, inventory);
  }
  const out: Record<string, number | string> = { 'operator.nodes': nodes, 'operator.gpus_per_node': gpus };
  let operatorDone: Promise<void> | undefined;
  let child: ChildProcess | undefined;
  const mode = opts.operatorProcess ?? (import.meta.url.endsWith('.js') ? 'child' : 'inline');
  try {
    await agents.start(stop.signal);
    const tSync = performance.now();
    if (mode === 'child') {
      child = fork(fileURLToPath(import.meta.url), [CHILD_FLAG, server.url], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      await nextMessage(child, 'ready');
    } else {
      const handle = startOperator(operatorDeps(kubeConfig, stop.signal, api));
      operatorDone = handle.done;
      while (!handle.ready().ready) await realClock.sleep(20);
    }
    out['operator.process'] = mode;
    out['operator.cache_sync_ms'] = Math.round(performance.now() - tSync);
    await realClock.sleep(500); // the start-up pass over every node key (nothing to write yet)
    server.resetRequestLog();
    globalThis.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;

    const t0 = performance.now();
    await api.create(GPU_PASSTHROUGH_REF, {
      metadata: { name: 'h100' },
      spec: { nodeSelector: { matchLabels: { 'example.com/gpu': 'h100' } }, resourceName: 'example.com/h100' },
    } as never);
    let specsAt: number | undefined;
    let peakRss = 0;
    for (;;) {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      if (performance.now() - t0 > timeoutMs) {
        const p = server.object('handoff.dev', 'v1alpha1', 'gpupassthroughs', 'h100') as GpuPassthrough | undefined;
        const labelled = names.filter((n) => server.object('', 'v1', 'nodes', n)?.metadata.labels?.[READY_LABEL] === 'true').length;
        const stuck = names
          .filter((n) => server.object('', 'v1', 'nodes', n)?.metadata.labels?.[READY_LABEL] !== 'true')
          .slice(0, 3)
          .map((n) => JSON.stringify(server.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', n)))
          .join('\n');
        if (process.env['OPERATOR_BENCH_DEBUG']) process.stderr.write(stuck + '\n');
        throw new Error(`operator did not converge within ${timeoutMs} ms: ${labelled}/${nodes} nodes labelled, policy status ${JSON.stringify(p?.status ?? null)}`);
      }
      await realClock.sleep(100);
      if (specsAt === undefined) {
        const last = server.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', names[names.length - 1] as string);
        const all = last && names.every((n) => ((server.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', n)?.['spec'] as { gpus?: unknown[] })?.gpus?.length ?? 0) === gpus);
        if (all) specsAt = performance.now();
      }
      const p = server.object('handoff.dev', 'v1alpha1', 'gpupassthroughs', 'h100') as GpuPassthrough | undefined;
      const ready = p?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') && p.status.nodesReady === nodes;
      if (!ready) continue;
      if (names.every((n) => server.object('', 'v1', 'nodes', n)?.metadata.labels?.[READY_LABEL] === 'true')) break;
    }
    const converged = performance.now() - t0;
    out['operator.converge_s'] = Math.round(converged / 10) / 100;
    if (specsAt !== undefined) out['operator.all_specs_written_s'] = Math.round((specsAt - t0) / 10) / 100;

    const perNode = new Map<string, number>();
    let policyStatus = 0;
    let events = 0;
    let failed = 0;
    for (const r of server.requests()) {
      const write = r.verb === 'patch' || r.verb === 'update' || r.verb === 'create' || r.verb === 'delete';
      if (!write) continue;
      if (r.status >= 400) failed++;
      // Agents write only nodegpupassthroughs/status; the operator writes node specs and node labels.
      if ((r.plural === 'nodes' || r.plural === 'nodegpupassthroughs') && r.subresource === undefined && r.name) {
        perNode.set(r.name, (perNode.get(r.name) ?? 0) + 1);
      } else if (r.plural === 'gpupassthroughs') policyStatus++;
      else if (r.plural === 'events') events++;
    }
    const counts = [...perNode.values()];
    const total = counts.reduce((a, b) => a + b, 0);
    out['operator.writes_per_node_avg'] = Math.round((total / nodes) * 100) / 100;
    out['operator.writes_per_node_max'] = Math.max(0, ...counts);
    out['operator.policy_writes'] = policyStatus;
    out['operator.event_writes'] = events;
    out['operator.failed_writes'] = failed;
    out['operator.agent_status_writes'] = agents.statusWrites;
    const mem = process.memoryUsage();
    let operatorRss = Math.max(peakRss, mem.rss);
    if (child) {
      child.send({ type: 'memory' });
      const m = await nextMessage<MemoryReport>(child, 'memory');
      operatorRss = m.peakRss;
      out['operator.rss_mib_peak'] = Math.round(m.peakRss / MiB);
      out['operator.heap_used_mib_after_gc'] = Math.round(m.heapUsed / MiB);
      out['bench_process.rss_mib_peak'] = Math.round(Math.max(peakRss, mem.rss) / MiB); // fake API server + agents
    } else {
      // One process for everything: an upper bound of the operator's own footprint.
      out['process.rss_mib_peak'] = Math.round(Math.max(peakRss, mem.rss) / MiB);
      out['process.heap_used_mib'] = Math.round(mem.heapUsed / MiB);
      out['process.heap_growth_during_converge_mib'] = Math.round((mem.heapUsed - heapBefore) / MiB);
    }
    out['operator.goal'] = converged <= 30_000 && Math.max(0, ...counts) <= 3 && operatorRss <= 300 * MiB ? 'met' : 'missed';
    return out;
  } finally {
    stop.abort();
    await operatorDone?.catch(() => undefined);
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child?.once('exit', r));
      child.send({ type: 'stop' });
      await Promise.race([exited, realClock.sleep(5_000).then(() => child?.kill())]);
    }
    await agents.stop();
    await server.close();
  }
}
