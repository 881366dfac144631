import { backoffDelay } from '../core/backoff.js';
import type { Clock } from '../core/clock.js';
import { CoalescedRun } from '../core/coalesced-run.js';
import { HandoffError, NotFoundError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { PciAddress } from '../core/pci-address.js';
import type { ApplyBasis, HandoffEngine, Intent } from '../handoff/engine.js';
import type { HostSnapshot } from '../host/model.js';
import type { KubeApi, KubeObject, ResourceRef } from '../kube/port.js';
import { AlreadyExistsError, CoreResources } from '../kube/port.js';
import { API_VERSION, NODE_GPU_PASSTHROUGH, parseNodeGpuPassthrough, type GpuStatus, type NodeGpuPassthrough, type NodeGpuPassthroughStatus } from '../api/v1alpha1/index.js';
import type { GpuStateRecorder, HostConsoleRecorder } from '../metrics/recorders.js';
import type { GroupRecord } from '../handoff/plan.js';
import { gpusInUse } from './in-use.js';
import type { PodResourcesPort } from './pod-resources.js';
import { nodeIntents, planNode, toReason } from './node-plan.js';
import { agentGauges, nodeStatus, type AgentGauges } from './node-status.js';

export const NODE_OBJECT: ResourceRef = { ...NODE_GPU_PASSTHROUGH, namespaced: false };
/** The agent labels its own object so it can watch just that one with a label selector. */
export const NODE_LABEL = 'handoff.dev/node';

export interface NodeAgentDeps {
  readonly nodeName: string;
  readonly engine: HandoffEngine;
  readonly kube: KubeApi;
  readonly podResources: PodResourcesPort;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly recorder?: GpuStateRecorder & HostConsoleRecorder;
  /** Called after every pass with the current host and names: the device plugin rescans at once (it diffs, so idle passes push nothing). */
  readonly onHostChanged?: (snapshot: HostSnapshot, resourceNames: ReadonlyMap<string, string>) => void;
  /** Retry delay after a failed prepare of a GPU, doubled per failure up to 10 minutes, ±20 % jitter (src/core/backoff.ts). */
  readonly retryBaseMs?: number;
  /**
   * Withdraws GPUs from the device plugin (advertised Unhealthy, so kubelet allocates them to no new pod)
   * — called every pass with every GPU on its way back to the host, and resolves once the plugin has
   * told kubelet. GPUs no longer in the set are offered again. Without it (no device plugin) nothing is
   * withdrawn.
   */
  readonly withdraw?: (addresses: ReadonlySet<string>) => Promise<void>;
  /** After a withdrawal, how long kubelet gets to finish an admission it began before (default 1 s). */
  readonly withdrawSettleMs?: number;
}

interface Failure {
  reason: string;
  message: string;
  count: number;
  notBefore: number;
}

/**
 * The node side of the operator contract: drives the engine towards the NodeGpuPassthrough spec the
 * operator wrote for this node, and reports inventory, per-GPU phases and node facts in its status.
 * Level-triggered: every pass re-reads the spec and the host. It never releases a GPU that a pod holds
 * (kubelet PodResources), and never one that it did not prepare itself.
 */
export class NodeAgent {
  private readonly failures = new Map<string, Failure>();
  private readonly passes = new CoalescedRun(async () => {
    await this.reconcileOnce();
  });

  constructor(private readonly deps: NodeAgentDeps) {}

  /** Creates the node object if missing (owned by the Node, so it goes with it). */
  async ensureObject(): Promise<NodeGpuPassthrough> {
    try {
      return await this.getObject();
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    const node = await this.deps.kube.get<{ metadata?: { uid?: string } }>(CoreResources.nodes, this.deps.nodeName).catch((err: unknown) => {
      if (err instanceof NotFoundError) {
        // Without its Node the object has no owner; the operator deletes it as an orphan after a grace period.
        this.deps.logger.warn({ node: this.deps.nodeName }, 'no Node of this name exists: is --node-name (NODE_NAME) right? The operator deletes an object without a Node after 5 minutes');
      }
      return undefined;
    });
    const obj: NodeGpuPassthrough = {
      apiVersion: API_VERSION,
      kind: NODE_GPU_PASSTHROUGH.kind,
      metadata: {
        name: this.deps.nodeName,
        labels: { [NODE_LABEL]: this.deps.nodeName },
        ...(node?.metadata?.uid
          ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: this.deps.nodeName, uid: node.metadata.uid }] }
          : {}),
      },
      spec: {},
    };
    try {
      return parseNodeGpuPassthrough(await this.deps.kube.create<KubeObject>(NODE_OBJECT, obj as KubeObject));
    } catch (err) {
      if (err instanceof AlreadyExistsError) return this.getObject();
      throw err;
    }
  }

  private async getObject(): Promise<NodeGpuPassthrough> {
    // Checked against the shipped CRD schema: a malformed object is an InvalidObjectError naming each field.
    return parseNodeGpuPassthrough(await this.deps.kube.get<KubeObject>(NODE_OBJECT, this.deps.nodeName));
  }

  /** Resolves when no pass is running (shutdown waits for an in-flight handoff to finish and journal). */
  settled(): Promise<void> {
    return this.passes.settled();
  }

  /** Runs one pass, or — if one is running — makes sure another follows it (passes never overlap). */
  trigger(): Promise<void> {
    return this.passes.trigger();
  }

  /**
   * One pass: read the spec, the host (one discovery), the records and PodResources; decide the
   * statuses and the engine intents (node-plan.ts, pure); show Preparing/Releasing; hand every intent
   * to the engine in one `apply` (one lock, one recovery; it reuses this pass's host view unless that
   * went stale, and discovers again only after changing the host); then write the status computed
   * from what the host is now (node-status.ts, pure).
   */
  async reconcileOnce(): Promise<NodeGpuPassthroughStatus> {
    const obj = await this.ensureObject();
    const { engine } = this.deps;
    let snapshot = await engine.discover();
    let records: ReadonlyMap<number, GroupRecord> = await engine.records();
    let { inUse, holders } = await this.inUse(snapshot);
    const now = new Date(this.deps.clock.now()).toISOString();
    const actions = planNode({ snapshot, spec: obj.spec, inUse, holders, records, previous: obj.status?.gpus, failures: this.failuresView(), now });
    const due = (a: PciAddress): boolean => (this.failures.get(a)?.notBefore ?? 0) <= this.deps.clock.now();
    let intents = nodeIntents(actions, due);

    if (intents.length > 0) {
      // Show Preparing/Releasing before the (possibly long) host work starts.
      await this.writeStatus(obj, this.statusOf(obj, snapshot, actions.statuses, now));
      let release = intents.filter((i) => i.want === 'host').map((i) => i.address);
      if (release.length > 0 && this.deps.withdraw) {
        ({ release, inUse, holders } = await this.withdrawThenRecheck(snapshot, release));
        intents = intents.filter((i) => i.want === 'vfio' || release.includes(i.address));
      }
      if (intents.length > 0) ({ snapshot, records } = await this.attempt(intents, { snapshot, records }));
    }
    // Everything leaving (released now, or held by a pod and waiting) stays withdrawn; the rest is offered.
    await this.deps.withdraw?.(new Set(actions.statuses.filter((s) => s.phase === 'Releasing').map((s) => s.address)));
    const final = planNode({ snapshot, spec: obj.spec, inUse, holders, records, previous: obj.status?.gpus, failures: this.failuresView(), now });
    const current = await this.getObject();
    const status = await this.writeStatus(current, this.statusOf(current, snapshot, final.statuses, now));
    this.report(agentGauges(snapshot, final.statuses, records));
    const names = new Map((obj.spec?.gpus ?? []).filter((g) => g.resourceName).map((g) => [g.address, g.resourceName!]));
    this.deps.onHostChanged?.(snapshot, names);
    return status;
  }

  private statusOf(obj: NodeGpuPassthrough, snapshot: HostSnapshot, gpus: readonly GpuStatus[], now: string): NodeGpuPassthroughStatus {
    return nodeStatus({
      snapshot,
      desired: (obj.spec?.gpus ?? []).map((d) => d.address),
      gpus,
      previousConditions: obj.status?.conditions,
      generation: obj.metadata.generation,
      now,
    });
  }

  private report(gauges: AgentGauges): void {
    const recorder = this.deps.recorder;
    if (!recorder) return;
    recorder.gpuPhases(gauges.phases);
    recorder.framebuffer(gauges.framebuffer);
    recorder.consolesBound(gauges.consolesBound);
  }

  /**
   * Runs the pass's intents through the engine and books each GPU's outcome as a failure (with
   * backoff) or a success. Returns the host and records as they are afterwards.
   */
  private async attempt(intents: readonly Intent[], basis: ApplyBasis): Promise<ApplyBasis> {
    try {
      const report = await this.deps.engine.apply(intents, { basis });
      for (const g of report.gpus) {
        if (g.outcome === 'rollback_failed') this.fail(g.address, toReason('ROLLBACK_FAILED'), `${g.error?.message ?? 'a step failed'}; ${g.rollbackError?.message ?? ''}`);
        else if (g.error) this.fail(g.address, toReason(g.error.code), g.error.message);
        else if (g.outcome === 'rolled_back' || g.outcome === 'failed') this.fail(g.address, toReason('HOST_WRITE_FAILED'), g.outcome);
        else this.failures.delete(g.address);
      }
      return { snapshot: report.after, records: report.records };
    } catch (err) {
      const code = err instanceof HandoffError ? err.code : 'INTERNAL';
      for (const i of intents) this.fail(i.address, toReason(code), (err as Error).message);
      this.deps.logger.warn({ gpus: intents.map((i) => i.address), err: (err as Error).message }, 'handoff failed');
      // The run stopped somewhere (lock held, recovery failed, ...): report the host as it is.
      return { snapshot: await this.deps.engine.discover(), records: await this.deps.engine.records() };
    }
  }

  private fail(address: string, reason: string, message: string): void {
    const prev = this.failures.get(address);
    const count = (prev?.count ?? 0) + 1;
    const delay = backoffDelay(count - 1, { initialMs: this.deps.retryBaseMs ?? 30_000, maxMs: 600_000 });
    this.failures.set(address, { reason, message, count, notBefore: this.deps.clock.now() + delay });
  }

  private failuresView(): Map<string, { reason: string; message: string }> {
    return new Map([...this.failures].map(([a, f]) => [a, { reason: f.reason, message: f.message }]));
  }

  /**
   * Closes the release window: a GPU is still advertised Healthy when PodResources first says nobody
   * holds it, so kubelet could admit a pod onto it before the unbind. Withdraw the GPUs from the device
   * plugin first, give kubelet a moment, then ask PodResources again; only GPUs still free are released.
   */
  private async withdrawThenRecheck(
    snapshot: HostSnapshot,
    candidates: readonly PciAddress[],
  ): Promise<{ release: PciAddress[]; inUse: Set<string> | undefined; holders: Map<string, string> }> {
    await this.deps.withdraw!(new Set(candidates));
    await this.deps.clock.sleep(this.deps.withdrawSettleMs ?? 1_000).catch(() => undefined);
    const { inUse, holders } = await this.inUse(snapshot);
    const free = candidates.filter((a) => inUse !== undefined && !inUse.has(a));
    const held = candidates.filter((a) => !free.includes(a));
    if (held.length > 0) this.deps.logger.warn({ gpus: held }, 'a pod took a GPU while it was being withdrawn, or PodResources failed; not releasing it');
    return { release: free, inUse, holders };
  }

  /** GPUs pods hold (by GPU address, whatever IDs the advertising plugin used) and who holds each. */
  private async inUse(snapshot: HostSnapshot): Promise<{ inUse: Set<string> | undefined; holders: Map<string, string> }> {
    const holders = new Map<string, string>();
    try {
      const list = await this.deps.podResources.list();
      for (const h of list) {
        for (const gpu of gpusInUse(snapshot, [h])) if (!holders.has(gpu)) holders.set(gpu, h.namespace ? `${h.namespace}/${h.pod}` : h.pod);
      }
      return { inUse: gpusInUse(snapshot, list), holders };
    } catch (err) {
      this.deps.logger.warn({ err: (err as Error).message }, 'kubelet PodResources unavailable; treating every prepared GPU as in use');
      return { inUse: undefined, holders };
    }
  }

  /** Patches the status when it differs from what the object has (idle passes write nothing). */
  private async writeStatus(obj: NodeGpuPassthrough, status: NodeGpuPassthroughStatus): Promise<NodeGpuPassthroughStatus> {
    if (JSON.stringify(status) === JSON.stringify(obj.status ?? {})) return status;
    await this.deps.kube.patchStatus(NODE_OBJECT, this.deps.nodeName, { type: 'merge', body: { status } });
    return status;
  }
}
