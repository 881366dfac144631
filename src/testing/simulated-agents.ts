import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../core/clock.js';
import { CoalescedRun } from '../core/coalesced-run.js';
import type { Logger } from '../core/logger.js';
import type { KubeApi, KubeObject } from '../kube/index.js';
import { CoreResources, ResilientInformer } from '../kube/index.js';
import type { GpuStatus, InventoryGpu, NodeGpuPassthrough, NodeGpuPassthroughStatus } from '../api/v1alpha1/index.js';
import { isNodeGpuPassthrough } from '../api/v1alpha1/index.js';
import { NODE_GPU_PASSTHROUGH_REF } from '../api/v1alpha1/index.js';

/**
 * A fleet of simulated node agents for the operator's integration tests, demo and benchmark: it plays
 * the agent side of the NodeGpuPassthrough contract over the real API (no engine, no host).
 *
 *  - `addNode` creates the Node and its NodeGpuPassthrough (owned by the Node) and reports the inventory,
 *    as a freshly started agent does;
 *  - whenever a NodeGpuPassthrough's spec generation is ahead of its status.observedGeneration, the agent
 *    "drives the engine" and reports every inventory GPU: desired ones Ready (or Failed, when the test
 *    injected a failure; or Releasing/InUse while the test holds them), the others Host.
 *
 * One informer serves every simulated node, so a thousand agents cost one watch, not a thousand.
 */

export interface SimulatedAgentsDeps {
  api: Pick<KubeApi, 'create' | 'patchStatus' | 'get'>;
  kubeConfig: KubeConfig;
  clock: Clock;
  logger: Logger;
}

export interface SimulatedAgentsOptions {
  /** Delay before an agent answers a spec change (the engine's work). Default 0. */
  answerDelayMs?: number;
  /** Report Preparing before Ready (one more status write per change). Default false. */
  reportPreparing?: boolean;
  /** The device plugin's default resource name for a GPU without an override. */
  defaultResourceName?: (gpu: InventoryGpu) => string;
}

export interface GpuFailure {
  readonly reason: string;
  readonly message: string;
}

const NODE_FACTS = { kernelRelease: '6.8.0-sim', iommuEnabled: true, framebuffer: 'none', vfioPci: 'Loaded' } as const;

function defaultName(gpu: InventoryGpu): string {
  return `handoff.dev/${gpu.vendorId}-${gpu.deviceId}`;
}

export class SimulatedAgents {
  private readonly informer: ResilientInformer<NodeGpuPassthrough & KubeObject>;
  private readonly failures = new Map<string, GpuFailure>(); // `${node}|${address}`
  private readonly inUse = new Set<string>();
  private readonly answers = new Map<string, CoalescedRun>(); // node -> its serialised answers
  private readonly forced = new Map<string, boolean>(); // node -> `force` of the answer chain in progress
  private readonly paused = new Set<string>();
  /** What each simulated host has: the agent's own truth, not what the API last said. */
  private readonly inventories = new Map<string, InventoryGpu[]>();
  private writes = 0;

  constructor(
    private readonly deps: SimulatedAgentsDeps,
    private readonly options: SimulatedAgentsOptions = {},
  ) {
    this.informer = new ResilientInformer<NodeGpuPassthrough & KubeObject>(
      { kubeConfig: deps.kubeConfig, api: deps.api as KubeApi, clock: deps.clock, logger: deps.logger },
      { resource: NODE_GPU_PASSTHROUGH_REF, backoff: { initialMs: 50, maxMs: 1_000, minIntervalMs: 50 } },
    );
    const on = (o: NodeGpuPassthrough & KubeObject): void => this.maybeAnswer(o.metadata.name);
    this.informer.on({ add: on, update: on });
  }

  /** Status writes the agents made (inventory reports included). */
  get statusWrites(): number {
    return this.writes;
  }

  async start(signal?: AbortSignal): Promise<void> {
    this.informer.start(signal);
    await this.informer.waitForSync(signal);
  }

  async stop(): Promise<void> {
    await this.informer.stop();
    await Promise.all([...this.answers.values()].map((r) => r.settled()));
  }

  /** Creates the Node (unless `createNode` is false) and its NodeGpuPassthrough with the inventory. */
  async addNode(name: string, labels: Record<string, string>, inventory: InventoryGpu[], opts: { createNode?: boolean } = {}): Promise<void> {
    this.inventories.set(name, inventory);
    let node: KubeObject;
    if (opts.createNode ?? true) node = await this.deps.api.create(CoreResources.nodes, { metadata: { name, labels } });
    else node = await this.deps.api.get(CoreResources.nodes, name);
    await this.deps.api.create(NODE_GPU_PASSTHROUGH_REF, {
      metadata: {
        name,
        ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name, uid: node.metadata?.uid ?? '', controller: true }],
      },
      spec: { gpus: [], paused: false },
    } as KubeObject);
    await this.writeStatus(name, { observedGeneration: 1, inventory, gpus: inventory.map((g) => this.gpuStatus(name, g, 'Host')), node: NODE_FACTS });
  }

  /** Adopts a node whose Node and NodeGpuPassthrough (with inventory) already exist, e.g. seeded by a benchmark. */
  register(name: string, inventory: InventoryGpu[]): void {
    this.inventories.set(name, inventory);
  }

  /** The next answers for this GPU report Failed with `reason` (until `clearFailure`). */
  fail(node: string, address: string, reason: string, message: string): void {
    this.failures.set(`${node}|${address}`, { reason, message });
    this.kick(node);
  }

  clearFailure(node: string, address: string): void {
    this.failures.delete(`${node}|${address}`);
    this.kick(node);
  }

  /** A pod holds this GPU: releasing it waits in Releasing/InUse until `free`. */
  hold(node: string, address: string): void {
    this.inUse.add(`${node}|${address}`);
  }

  free(node: string, address: string): void {
    this.inUse.delete(`${node}|${address}`);
    this.kick(node);
  }

  /** A crashed agent: it stops answering for `node` until `resume`. */
  pause(node: string): void {
    this.paused.add(node);
  }

  resume(node: string): void {
    this.paused.delete(node);
    this.kick(node);
  }

  /** Answers for `node` now, whatever the generations say (a changed failure or a freed GPU). */
  private kick(node: string): void {
    const s = this.informer.get(node);
    if (s) this.answer(node, true);
  }

  private maybeAnswer(node: string): void {
    const s = this.informer.get(node);
    // No status yet: addNode is about to report the inventory; answering now would only race it.
    if (!s || !isNodeGpuPassthrough(s) || !s.status || !this.inventories.has(node)) return;
    const generation = s.metadata.generation ?? 0;
    if ((s.status?.observedGeneration ?? 0) >= generation && !this.releasingHeld(s)) return;
    this.answer(node, false);
  }

  /** A GPU reported Releasing/InUse whose pod is gone must be released on the next look. */
  private releasingHeld(s: NodeGpuPassthrough): boolean {
    return (s.status?.gpus ?? []).some((g) => g.phase === 'Releasing' && !this.inUse.has(`${s.metadata.name}|${g.address}`));
  }

  private answer(node: string, force: boolean): void {
    if (this.paused.has(node)) return;
    let runs = this.answers.get(node);
    if (!runs) {
      runs = new CoalescedRun(() => this.answerSafely(node), () => !this.paused.has(node));
      this.answers.set(node, runs);
    }
    // A chain of answers keeps the `force` it started with; requests during it only ask for one more answer.
    if (!runs.running) this.forced.set(node, force);
    void runs.trigger();
  }

  /** One answer; a failure is logged and asks for another answer after a short pause. */
  private async answerSafely(node: string): Promise<void> {
    try {
      if (this.options.answerDelayMs) await this.deps.clock.sleep(this.options.answerDelayMs);
      await this.answerOnce(node, this.forced.get(node) ?? false);
    } catch (err) {
      this.deps.logger.warn({ node, err: err instanceof Error ? err.message : String(err) }, 'simulated agent failed to report');
      void this.answers.get(node)?.trigger();
      await this.deps.clock.sleep(50);
    }
  }

  private async answerOnce(node: string, force: boolean): Promise<void> {
    const s = this.informer.get(node);
    const inventory = this.inventories.get(node);
    if (!s || !isNodeGpuPassthrough(s) || this.paused.has(node) || !inventory) return;
    const generation = s.metadata.generation ?? 0;
    if (!force && (s.status?.observedGeneration ?? 0) >= generation && !this.releasingHeld(s)) return;
    const desired = new Map((s.spec?.gpus ?? []).map((g) => [g.address, g]));
    const previous = new Map((s.status?.gpus ?? []).map((g) => [g.address, g]));
    if (this.options.reportPreparing && desired.size > 0) {
      const preparing = inventory.map((g) =>
        desired.has(g.address) && previous.get(g.address)?.phase !== 'Ready' ? this.gpuStatus(node, g, 'Preparing') : (previous.get(g.address) ?? this.gpuStatus(node, g, 'Host')),
      );
      await this.writeStatus(node, { ...s.status, observedGeneration: s.status?.observedGeneration ?? 0, inventory, gpus: preparing });
    }
    const gpus = inventory.map((g): GpuStatus => {
      const want = desired.get(g.address);
      const key = `${node}|${g.address}`;
      if (want) {
        const failure = this.failures.get(key);
        if (failure) return this.gpuStatus(node, g, 'Failed', failure, want.resourceName);
        return this.gpuStatus(node, g, 'Ready', undefined, want.resourceName);
      }
      const prev = previous.get(g.address);
      if (prev && prev.phase !== 'Host' && this.inUse.has(key)) {
        return this.gpuStatus(node, g, 'Releasing', { reason: 'InUse', message: 'a pod holds this GPU' });
      }
      return this.gpuStatus(node, g, 'Host');
    });
    for (const g of gpus) {
      // A phase that did not change keeps its transition time, as a real agent's would.
      const prev = previous.get(g.address);
      if (prev?.phase === g.phase) g.lastTransitionTime = prev.lastTransitionTime;
    }
    await this.writeStatus(node, { ...s.status, observedGeneration: generation, inventory, gpus, node: NODE_FACTS });
  }

  private gpuStatus(node: string, g: InventoryGpu, phase: GpuStatus['phase'], why?: GpuFailure, resourceName?: string): GpuStatus {
    void node;
    const st: GpuStatus = {
      address: g.address,
      phase,
      driver: phase === 'Ready' || phase === 'Releasing' ? 'vfio-pci' : phase === 'Host' ? 'nvidia' : 'none',
      lastTransitionTime: new Date(this.deps.clock.now()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    };
    if (g.iommuGroup !== undefined) st.iommuGroup = g.iommuGroup;
    if (g.numaNode !== undefined) st.numaNode = g.numaNode;
    if (phase === 'Ready' || phase === 'Releasing') st.resourceName = resourceName || (this.options.defaultResourceName ?? defaultName)(g);
    if (why) {
      st.reason = why.reason;
      st.message = why.message;
    }
    return st;
  }

  private async writeStatus(node: string, status: NodeGpuPassthroughStatus): Promise<void> {
    await this.deps.api.patchStatus(NODE_GPU_PASSTHROUGH_REF, node, { type: 'merge', body: { status } });
    this.writes++;
  }
}
