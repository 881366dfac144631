import type { Clock } from '../core/clock.js';
import { HandoffError, NotFoundError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { PciAddress } from '../core/pci-address.js';
import type { HandoffEngine } from '../handoff/engine.js';
import type { HostSnapshot } from '../host/model.js';
import type { KubeApi, KubeObject, ResourceRef } from '../kube/port.js';
import { AlreadyExistsError, CoreResources } from '../kube/port.js';
import { API_VERSION, inventoryEntry, NODE_GPU_PASSTHROUGH, parseNodeGpuPassthrough, type Condition, type GpuStatus, type NodeFacts, type NodeGpuPassthrough, type NodeGpuPassthroughStatus } from '../api/v1alpha1/index.js';
import type { GpuStateRecorder, HostConsoleRecorder } from '../metrics/recorders.js';
import type { GroupRecord } from '../handoff/plan.js';
import { gpusInUse } from './in-use.js';
import type { PodResourcesPort } from './pod-resources.js';
import { planNode, toReason } from './node-plan.js';

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
  /** Retry delay after a failed prepare of a GPU, doubled per failure up to 10 minutes. */
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
  private running: Promise<void> | undefined;
  private again = false;

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
  async settled(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  /** Runs one pass, or — if one is running — makes sure another follows it (passes never overlap). */
  trigger(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.reconcileOnce();
        } while (this.again);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  async reconcileOnce(): Promise<NodeGpuPassthroughStatus> {
    const obj = await this.ensureObject();
    const { engine } = this.deps;
    let snapshot = await engine.discover();
    const records = await engine.records();
    let { inUse, holders } = await this.inUse(snapshot);
    const now = new Date(this.deps.clock.now()).toISOString();
    const actions = planNode({ snapshot, spec: obj.spec, inUse, holders, records, previous: obj.status?.gpus, failures: this.failuresView(), now });
    const due = (a: PciAddress): boolean => (this.failures.get(a)?.notBefore ?? 0) <= this.deps.clock.now();
    const prepareBoot = actions.prepare.allowBootGpu.filter(due);
    const prepareNormal = actions.prepare.normal.filter(due);

    if (prepareBoot.length + prepareNormal.length + actions.release.length > 0) {
      // Show Preparing/Releasing before the (possibly long) host work starts.
      await this.writeStatus(obj, snapshot, actions.statuses);
      for (const [list, allowBootGpu] of [[prepareBoot, true], [prepareNormal, false]] as const) {
        if (list.length === 0) continue;
        await this.attempt(list, () => engine.prepare({ all: false, selectors: list.map((address) => ({ kind: 'address', address })) }, { allowBootGpu }));
      }
      let release: PciAddress[] = [...actions.release];
      if (release.length > 0 && this.deps.withdraw) ({ release, inUse, holders } = await this.withdrawThenRecheck(snapshot, release));
      if (release.length > 0) {
        await this.attempt(release, () => engine.release({ all: false, selectors: release.map((address) => ({ kind: 'address', address })) }));
      }
      snapshot = await engine.discover();
    }
    // Everything leaving (released now, or held by a pod and waiting) stays withdrawn; the rest is offered.
    await this.deps.withdraw?.(new Set(actions.statuses.filter((s) => s.phase === 'Releasing').map((s) => s.address)));
    const final = planNode({ snapshot, spec: obj.spec, inUse, holders, records: await engine.records(), previous: obj.status?.gpus, failures: this.failuresView(), now });
    const status = await this.writeStatus(await this.getObject(), snapshot, final.statuses);
    this.report(snapshot, final.statuses, await engine.records());
    const names = new Map((obj.spec?.gpus ?? []).filter((g) => g.resourceName).map((g) => [g.address, g.resourceName!]));
    this.deps.onHostChanged?.(snapshot, names);
    return status;
  }

  private report(snapshot: HostSnapshot, statuses: readonly GpuStatus[], records: ReadonlyMap<number, GroupRecord>): void {
    const recorder = this.deps.recorder;
    if (!recorder) return;
    const counts = new Map<string, { phase: GpuStatus['phase']; resource: string; count: number }>();
    for (const s of statuses) {
      const resource = s.resourceName ?? 'unassigned';
      const key = `${s.phase}\u0000${resource}`;
      const c = counts.get(key) ?? { phase: s.phase, resource, count: 0 };
      c.count++;
      counts.set(key, c);
    }
    recorder.gpuPhases([...counts.values()]);
    const bound = snapshot.framebuffers.some((f) => f.driver !== undefined);
    const released = snapshot.framebuffers.length > 0 || [...records.values()].some((r) => r.framebuffers.length > 0);
    recorder.framebuffer(bound ? 'host' : released ? 'released' : 'none');
    recorder.consolesBound(snapshot.vtconsoles.filter((v) => v.kind === 'fbcon' && v.bound).length);
  }

  private async attempt(
    addresses: readonly PciAddress[],
    op: () => Promise<{ outcomes: readonly { gpus: readonly PciAddress[]; outcome: string; error?: { code: string; message: string }; rollbackError?: { message: string } }[] }>,
  ): Promise<void> {
    try {
      const report = await op();
      for (const o of report.outcomes) {
        for (const a of o.gpus) {
          if (o.outcome === 'rollback_failed') this.fail(a, toReason('ROLLBACK_FAILED'), `${o.error?.message ?? 'a step failed'}; ${o.rollbackError?.message ?? ''}`);
          else if (o.outcome === 'rolled_back' || o.outcome === 'failed') this.fail(a, toReason(o.error?.code ?? 'HOST_WRITE_FAILED'), o.error?.message ?? o.outcome);
          else this.failures.delete(a);
        }
      }
    } catch (err) {
      const code = err instanceof HandoffError ? err.code : 'INTERNAL';
      for (const a of addresses) this.fail(a, toReason(code), (err as Error).message);
      this.deps.logger.warn({ gpus: addresses, err: (err as Error).message }, 'handoff failed');
    }
  }

  private fail(address: string, reason: string, message: string): void {
    const prev = this.failures.get(address);
    const count = (prev?.count ?? 0) + 1;
    const delay = Math.min((this.deps.retryBaseMs ?? 30_000) * 2 ** (count - 1), 600_000);
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

  private async writeStatus(obj: NodeGpuPassthrough, snapshot: HostSnapshot, gpus: readonly GpuStatus[]): Promise<NodeGpuPassthroughStatus> {
    const desired = obj.spec?.gpus ?? [];
    const notReady = desired.filter((d) => gpus.find((g) => g.address === d.address)?.phase !== 'Ready');
    const failed = gpus.filter((g) => g.phase === 'Failed');
    const now = new Date(this.deps.clock.now()).toISOString();
    const ready: Condition = {
      type: 'Ready',
      status: notReady.length === 0 ? 'True' : 'False',
      reason: notReady.length === 0 ? 'AllReady' : failed.length > 0 ? 'GpuFailed' : 'InProgress',
      message: notReady.length === 0 ? `${desired.length} GPU(s) ready` : `${notReady.length} of ${desired.length} GPU(s) not ready`,
      lastTransitionTime: now,
    };
    const prevReady = obj.status?.conditions?.find((c) => c.type === 'Ready');
    if (prevReady && prevReady.status === ready.status) ready.lastTransitionTime = prevReady.lastTransitionTime;
    if (obj.metadata.generation !== undefined) ready.observedGeneration = obj.metadata.generation;
    const status: NodeGpuPassthroughStatus = {
      ...(obj.metadata.generation !== undefined ? { observedGeneration: obj.metadata.generation } : {}),
      inventory: snapshot.gpus.map(inventoryEntry),
      gpus: [...gpus],
      node: nodeFacts(snapshot),
      conditions: [ready],
    };
    if (JSON.stringify(status) === JSON.stringify(obj.status ?? {})) return status;
    await this.deps.kube.patchStatus(NODE_OBJECT, this.deps.nodeName, { type: 'merge', body: { status } });
    return status;
  }
}

export function nodeFacts(snapshot: HostSnapshot): NodeFacts {
  const fb = snapshot.framebuffers.map((f) => `${f.device}${f.claim ? ` (${f.claim})` : ''}${f.driver ? '' : ' unbound'}`).join(', ');
  return {
    ...(snapshot.kernel.release ? { kernelRelease: snapshot.kernel.release } : {}),
    iommuEnabled: snapshot.iommuEnabled,
    framebuffer: fb || 'none',
    vfioPci: snapshot.vfioPci.loaded ? 'Loaded' : snapshot.vfioPci.loadable ? 'Loadable' : 'Missing',
  };
}
