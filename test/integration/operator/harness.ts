import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { KubeApi, KubeObject } from '../../../src/kube/index.js';
import { ClientNodeKubeApi, CoreResources } from '../../../src/kube/index.js';
import type { PolicyRecorder, ReconcileRecorder } from '../../../src/metrics/recorders.js';
import type { GpuPassthrough, GpuPassthroughSpec, InventoryGpu } from '../../../src/api/v1alpha1/index.js';
import { GPU_PASSTHROUGH_REF } from '../../../src/api/v1alpha1/index.js';
import { SimulatedAgents } from '../../../src/testing/simulated-agents.js';
import type { OperatorHandle, RunOperatorDeps } from '../../../src/operator/run-operator.js';
import { startOperator } from '../../../src/operator/run-operator.js';
import { FakeApiServer, type StoredObject } from '../../support/fake-apiserver/index.js';

/** Polls `check` until it stops throwing (or the deadline passes, then rethrows its last error). */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Records what the operator reports through its recorders (a fake, not a mock). */
export class RecordingRecorder implements ReconcileRecorder, PolicyRecorder {
  readonly results: string[] = [];
  readonly policies = new Map<string, { nodesDesired: number; nodesReady: number; degraded: boolean }>();
  isLeader = false;
  reconciled(_controller: string, result: 'success' | 'error' | 'requeue'): void {
    this.results.push(result);
  }
  queueDepth(): void {}
  leader(isLeader: boolean): void {
    this.isLeader = isLeader;
  }
  policy(name: string, state: { nodesDesired: number; nodesReady: number; degraded: boolean }): void {
    this.policies.set(name, state);
  }
  policyRemoved(name: string): void {
    this.policies.delete(name);
  }
}

/** Fast timings so a test converges in well under a second. */
export const FAST: Pick<RunOperatorDeps, 'resyncMs' | 'leaderElection' | 'controller'> = {
  resyncMs: 2_000,
  leaderElection: { leaseDurationMs: 1_500, renewDeadlineMs: 1_000, retryPeriodMs: 150 },
  controller: {
    workers: 4,
    batchMs: 20,
    kubevirtCheckMs: 100,
    releasePollMs: 200,
    informerBackoff: { initialMs: 10, maxMs: 200, minIntervalMs: 10 },
    queueBackoff: { initialMs: 5, maxMs: 200 },
  },
};

export interface Cluster {
  server: FakeApiServer;
  api: KubeApi;
  agents: SimulatedAgents;
  operators: { handle: OperatorHandle; abort: AbortController; recorder: RecordingRecorder }[];
  startOperator(over?: Partial<RunOperatorDeps>): { handle: OperatorHandle; abort: AbortController; recorder: RecordingRecorder };
  createPolicy(name: string, spec: GpuPassthroughSpec): Promise<void>;
  updatePolicySpec(name: string, spec: GpuPassthroughSpec): Promise<void>;
  deletePolicy(name: string): Promise<void>;
  policy(name: string): GpuPassthrough | undefined;
  state(node: string): StoredObject | undefined;
  node(node: string): StoredObject | undefined;
  events(): { reason: string; type: string; kind: string; name: string; message: string }[];
  close(): Promise<void>;
}

export async function startCluster(opts: { agents?: ConstructorParameters<typeof SimulatedAgents>[1] } = {}): Promise<Cluster> {
  const server = await FakeApiServer.start();
  const kubeConfig = server.kubeConfig();
  const api = new ClientNodeKubeApi({ kubeConfig });
  const agents = new SimulatedAgents({ api, kubeConfig: server.kubeConfig(), clock: realClock, logger: silentLogger }, opts.agents);
  const stopAgents = new AbortController();
  await agents.start(stopAgents.signal);
  const operators: Cluster['operators'] = [];
  let n = 0;
  const cluster: Cluster = {
    server,
    api,
    agents,
    operators,
    startOperator(over = {}) {
      const abort = new AbortController();
      const recorder = new RecordingRecorder();
      const handle = startOperator({
        kubeConfig: server.kubeConfig(),
        clock: realClock,
        logger: silentLogger,
        recorder,
        leaderElect: false,
        leaseNamespace: 'vfio-handoff',
        identity: `operator-${n++}`,
        signal: abort.signal,
        ...FAST,
        ...over,
      });
      const op = { handle, abort, recorder };
      operators.push(op);
      return op;
    },
    async createPolicy(name, spec) {
      await api.create(GPU_PASSTHROUGH_REF, { metadata: { name }, spec } as KubeObject);
    },
    async updatePolicySpec(name, spec) {
      const cur = await api.get<GpuPassthrough & KubeObject>(GPU_PASSTHROUGH_REF, name);
      await api.replace(GPU_PASSTHROUGH_REF, { ...cur, spec } as KubeObject);
    },
    async deletePolicy(name) {
      await api.delete(GPU_PASSTHROUGH_REF, name);
    },
    policy: (name) => server.object('handoff.dev', 'v1alpha1', 'gpupassthroughs', name) as GpuPassthrough | undefined,
    state: (node) => server.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', node),
    node: (node) => server.object('', 'v1', 'nodes', node),
    events: () =>
      server.objects('', 'v1', 'events').map((e) => {
        const o = e as unknown as { reason: string; type: string; message: string; involvedObject: { kind: string; name: string } };
        return { reason: o.reason, type: o.type, kind: o.involvedObject.kind, name: o.involvedObject.name, message: o.message };
      }),
    async close() {
      for (const op of operators) op.abort.abort();
      await Promise.allSettled(operators.map((op) => op.handle.done));
      stopAgents.abort();
      await agents.stop();
      await server.close();
    },
  };
  return cluster;
}

/** `count` GPUs on buses 0x41.. (gpu(0) is 0000:41:00.0), optionally with the boot GPU first. */
export function inventory(count: number, over: (i: number) => Partial<InventoryGpu> = () => ({})): InventoryGpu[] {
  return Array.from({ length: count }, (_, i) => ({
    address: `0000:${(0x41 + i).toString(16)}:00.0`,
    vendorId: '10de',
    deviceId: '2331',
    class: '0x030200',
    bootGpu: false,
    iommuGroup: 40 + i,
    numaNode: 0,
    ...over(i),
  }));
}

export function addr(i: number): string {
  return `0000:${(0x41 + i).toString(16)}:00.0`;
}

export const NODES = CoreResources.nodes;

export function condition(p: GpuPassthrough | undefined, type: string): string | undefined {
  return p?.status?.conditions?.find((c) => c.type === type)?.status;
}

export function specGpus(s: StoredObject | undefined): { address: string; policy: string; resourceName?: string }[] {
  return ((s?.['spec'] as { gpus?: { address: string; policy: string; resourceName?: string }[] } | undefined)?.gpus ?? []).map((g) => g);
}
