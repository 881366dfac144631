import type { GroupRecord } from '../handoff/plan.js';
import type { HostSnapshot } from '../host/model.js';
import { inventoryEntry, type Condition, type GpuPhase, type GpuStatus, type NodeFacts, type NodeGpuPassthroughStatus } from '../api/v1alpha1/index.js';

/**
 * What the agent reports, as pure functions of what it read: the NodeGpuPassthrough status (inventory,
 * per-GPU statuses from node-plan.ts, node facts, the Ready condition) and the metrics' gauges. The
 * agent only writes what these return.
 */

export interface ReadyInput {
  /** Addresses the spec wants on VFIO. */
  readonly desired: readonly string[];
  readonly gpus: readonly GpuStatus[];
  /** The Ready condition the object has now: its lastTransitionTime is kept while the status holds. */
  readonly previous: Condition | undefined;
  readonly generation: number | undefined;
  /** RFC 3339, the time of this pass. */
  readonly now: string;
}

/**
 * Ready: True (`AllReady`) when every desired GPU's phase is Ready; else False with `GpuFailed` when
 * any GPU is Failed, `InProgress` otherwise. The message counts desired GPUs.
 */
export function readyCondition(input: ReadyInput): Condition {
  const notReady = input.desired.filter((d) => input.gpus.find((g) => g.address === d)?.phase !== 'Ready');
  const failed = input.gpus.some((g) => g.phase === 'Failed');
  const ok = notReady.length === 0;
  const ready: Condition = {
    type: 'Ready',
    status: ok ? 'True' : 'False',
    reason: ok ? 'AllReady' : failed ? 'GpuFailed' : 'InProgress',
    message: ok ? `${input.desired.length} GPU(s) ready` : `${notReady.length} of ${input.desired.length} GPU(s) not ready`,
    lastTransitionTime: input.previous && input.previous.status === (ok ? 'True' : 'False') ? input.previous.lastTransitionTime : input.now,
  };
  if (input.generation !== undefined) ready.observedGeneration = input.generation;
  return ready;
}

export interface NodeStatusInput {
  readonly snapshot: HostSnapshot;
  readonly desired: readonly string[];
  readonly gpus: readonly GpuStatus[];
  readonly previousConditions: readonly Condition[] | undefined;
  readonly generation: number | undefined;
  readonly now: string;
}

/** The whole status subresource the agent writes for its node. */
export function nodeStatus(input: NodeStatusInput): NodeGpuPassthroughStatus {
  const ready = readyCondition({
    desired: input.desired,
    gpus: input.gpus,
    previous: input.previousConditions?.find((c) => c.type === 'Ready'),
    generation: input.generation,
    now: input.now,
  });
  return {
    ...(input.generation !== undefined ? { observedGeneration: input.generation } : {}),
    inventory: input.snapshot.gpus.map(inventoryEntry),
    gpus: [...input.gpus],
    node: nodeFacts(input.snapshot),
    conditions: [ready],
  };
}

/**
 * Node facts from the host: kernel release, IOMMU, the framebuffers ("<device> (<claim>)", " unbound"
 * when no driver holds it; "none" without any) and vfio-pci (Loaded / Loadable / Missing).
 */
export function nodeFacts(snapshot: HostSnapshot): NodeFacts {
  const fb = snapshot.framebuffers.map((f) => `${f.device}${f.claim ? ` (${f.claim})` : ''}${f.driver ? '' : ' unbound'}`).join(', ');
  return {
    ...(snapshot.kernel.release ? { kernelRelease: snapshot.kernel.release } : {}),
    iommuEnabled: snapshot.iommuEnabled,
    framebuffer: fb || 'none',
    vfioPci: snapshot.vfioPci.loaded ? 'Loaded' : snapshot.vfioPci.loadable ? 'Loadable' : 'Missing',
  };
}

export interface AgentGauges {
  /** GPUs per (phase, resource name); `unassigned` for GPUs without one. */
  readonly phases: readonly { readonly phase: GpuPhase; readonly resource: string; readonly count: number }[];
  /**
   * `host`: a framebuffer driver holds a firmware framebuffer; `released`: framebuffers exist but none
   * is bound, or a record says prepare released one; `none`: neither.
   */
  readonly framebuffer: 'host' | 'released' | 'none';
  /** fbcon consoles bound now. */
  readonly consolesBound: number;
}

export function agentGauges(snapshot: HostSnapshot, gpus: readonly GpuStatus[], records: ReadonlyMap<number, GroupRecord>): AgentGauges {
  const counts = new Map<string, { phase: GpuPhase; resource: string; count: number }>();
  for (const s of gpus) {
    const resource = s.resourceName ?? 'unassigned';
    const key = `${s.phase}\u0000${resource}`;
    const c = counts.get(key) ?? { phase: s.phase, resource, count: 0 };
    c.count++;
    counts.set(key, c);
  }
  const bound = snapshot.framebuffers.some((f) => f.driver !== undefined);
  const released = snapshot.framebuffers.length > 0 || [...records.values()].some((r) => r.framebuffers.length > 0);
  return {
    phases: [...counts.values()],
    framebuffer: bound ? 'host' : released ? 'released' : 'none',
    consolesBound: snapshot.vtconsoles.filter((v) => v.kind === 'fbcon' && v.bound).length,
  };
}
