import type { Condition, GpuPassthrough, GpuPassthroughStatus, NodeGpuPassthrough, NodeGpuPassthroughSpec, NodeLike } from '../api/v1alpha1/index.js';
import type { KubeVirtCr } from '../api/kubevirt.js';
import { FINALIZER, READY_LABEL, timeOf } from '../api/v1alpha1/index.js';
import { decideFinalizer } from './finalizer.js';
import type { KubeVirtChange } from './kubevirt.js';
import { desiredKubeVirtDevices, planKubeVirt } from './kubevirt.js';
import { readyLabelChange } from './labels.js';
import type { ReadyLabelValue } from './labels.js';
import type { ClusterMerge } from './merge.js';
import { mergeCluster, mergeNode, nodeSpecsEqual } from './merge.js';
import { resourceConflicts, withResourceConflicts } from './resource-conflicts.js';
import { computePolicyStatus, policyStatusEqual } from './status.js';

/**
 * The whole operator decision as pure functions: given a view of the cluster, which writes bring it
 * closer to the declared intent. An empty list means converged. The controller is a thin shell that
 * reads its informer caches into a `ClusterView`, calls one of these, and performs the writes in order.
 *
 * Keys: one per node (`reconcileNode`), one per policy (`reconcilePolicy`), and one singleton for the
 * KubeVirt CR (`reconcileKubeVirt`). Per node the operator writes at most: the NodeGpuPassthrough spec
 * once, the ready label once when the GPUs are Ready, and one Event on that transition — 3 writes.
 */

export interface EventTarget {
  readonly kind: 'GpuPassthrough' | 'Node' | 'NodeGpuPassthrough';
  readonly name: string;
  readonly uid?: string;
}

export type Write =
  | { readonly kind: 'patchNodeSpec'; readonly node: string; readonly spec: NodeGpuPassthroughSpec; readonly resourceVersion?: string }
  | { readonly kind: 'labelNode'; readonly node: string; readonly label: string; readonly value: ReadyLabelValue; readonly resourceVersion?: string }
  | { readonly kind: 'patchPolicyStatus'; readonly policy: string; readonly status: GpuPassthroughStatus; readonly resourceVersion?: string }
  /** Makes the Node own its NodeGpuPassthrough (garbage-collected with it); `ownerReferences` is the whole new list. */
  | { readonly kind: 'setNodeOwner'; readonly node: string; readonly ownerReferences: NonNullable<NodeGpuPassthrough['metadata']['ownerReferences']>; readonly resourceVersion?: string }
  /** Deletes a NodeGpuPassthrough whose Node does not exist (an orphan), with its uid as precondition. */
  | { readonly kind: 'deleteOrphan'; readonly node: string; readonly uid?: string; readonly resourceVersion?: string }
  | { readonly kind: 'addFinalizer'; readonly policy: string; readonly finalizers: readonly string[]; readonly resourceVersion?: string }
  | { readonly kind: 'removeFinalizer'; readonly policy: string; readonly finalizers: readonly string[]; readonly resourceVersion?: string }
  | { readonly kind: 'updateKubeVirt'; readonly namespace?: string; readonly name: string; readonly change: KubeVirtChange }
  | {
      readonly kind: 'event';
      readonly regarding: EventTarget;
      readonly type: 'Normal' | 'Warning';
      readonly reason: string;
      readonly message: string;
    };

export interface ClusterView {
  readonly policies: readonly GpuPassthrough[];
  readonly nodes: readonly NodeLike[];
  /** NodeGpuPassthrough objects by name (= node name). */
  readonly states: ReadonlyMap<string, NodeGpuPassthrough>;
  /** undefined: the KubeVirt CRD is not installed; null: installed but there is no KubeVirt CR. */
  readonly kubevirt?: KubeVirtCr | null;
  readonly now: Date | number;
  /** Grace period of a NodeGpuPassthrough without its Node, ms. Default ORPHAN_GRACE_MS. */
  readonly orphanGraceMs?: number;
}

/** Reasons of the events this module emits (stable; tests and runbooks match on them). */
export const EVENT_REASONS = {
  nodeReady: 'PassthroughReady',
  nodeNotReady: 'PassthroughNotReady',
  nodeCleared: 'PassthroughCleared',
  nodeFailing: 'GpuPassthroughFailed',
  policyReady: 'Ready',
  policyDegraded: 'Degraded',
  policyConflict: 'Conflict',
  released: 'Released',
  kubevirtUpdated: 'KubeVirtUpdated',
  waitingForPod: 'WaitingForPod',
  orphaned: 'Orphaned',
} as const;

/**
 * How long a NodeGpuPassthrough may exist without its Node before it is deleted as an orphan: long enough
 * for a Node to register after its agent started (or to come back after being recreated), ms.
 */
export const ORPHAN_GRACE_MS = 5 * 60_000;

/** When the NodeGpuPassthrough of a missing Node becomes an orphan to delete (ms since epoch), or undefined if it is none. */
export function orphanDeadline(state: NodeGpuPassthrough, node: NodeLike | undefined, graceMs = ORPHAN_GRACE_MS): number | undefined {
  if (node) return undefined;
  // Owned by a Node: the garbage collector deletes it with that Node (or already is).
  if ((state.metadata.ownerReferences ?? []).some((r) => r.kind === 'Node')) return undefined;
  const created = timeOf(state.metadata.creationTimestamp);
  return (created ?? 0) + graceMs;
}

function ownerRefsFor(node: NodeLike, state: NodeGpuPassthrough): NonNullable<NodeGpuPassthrough['metadata']['ownerReferences']> | undefined {
  const uid = node.metadata.uid;
  if (uid === undefined) return undefined;
  const refs = state.metadata.ownerReferences ?? [];
  if (refs.some((r) => r.kind === 'Node' && r.uid === uid)) return undefined;
  // A reference to an earlier Node of the same name is stale: replace it.
  return [...refs.filter((r) => r.kind !== 'Node'), { apiVersion: 'v1', kind: 'Node', name: node.metadata.name, uid }];
}

function targetOf(kind: EventTarget['kind'], meta: { name: string; uid?: string }): EventTarget {
  return meta.uid !== undefined ? { kind, name: meta.name, uid: meta.uid } : { kind, name: meta.name };
}

export function reconcileNode(nodeName: string, view: ClusterView): Write[] {
  const node = view.nodes.find((n) => n.metadata.name === nodeName);
  const state = view.states.get(nodeName);
  // No NodeGpuPassthrough: the agent creates it, and that creation triggers this reconcile again.
  if (!state) return [];
  const rv = state.metadata.resourceVersion;
  if (!node) {
    // Owned by a Node: garbage-collected with it. Not owned (created while the Node was absent, or by an
    // agent started with a wrong --node-name): reported and deleted once the grace period is over.
    const deadline = orphanDeadline(state, node, view.orphanGraceMs);
    const now = typeof view.now === 'number' ? view.now : view.now.getTime();
    if (deadline === undefined || now < deadline) return [];
    const target: EventTarget = { kind: 'NodeGpuPassthrough', name: nodeName, ...(state.metadata.uid !== undefined ? { uid: state.metadata.uid } : {}) };
    return [
      {
        kind: 'event',
        regarding: target,
        type: 'Warning',
        reason: EVENT_REASONS.orphaned,
        message: `no Node named ${nodeName} exists (an agent started with a wrong --node-name, or a removed node): deleting this NodeGpuPassthrough`,
      },
      { kind: 'deleteOrphan', node: nodeName, ...(state.metadata.uid !== undefined ? { uid: state.metadata.uid } : {}), ...(rv !== undefined ? { resourceVersion: rv } : {}) },
    ];
  }
  const owners = ownerRefsFor(node, state);
  if (owners) {
    // Alone: the write moves the resourceVersion the other writes' preconditions name; the change event
    // brings this node back for them.
    return [{ kind: 'setNodeOwner', node: nodeName, ownerReferences: owners, ...(rv !== undefined ? { resourceVersion: rv } : {}) }];
  }
  const writes: Write[] = [];
  const merged = mergeNode(view.policies, node, state);
  if (!nodeSpecsEqual(state.spec, merged.spec)) {
    const w: Write = state.metadata.resourceVersion !== undefined
      ? { kind: 'patchNodeSpec', node: nodeName, spec: merged.spec, resourceVersion: state.metadata.resourceVersion }
      : { kind: 'patchNodeSpec', node: nodeName, spec: merged.spec };
    writes.push(w);
  }
  const label = readyLabelChange(node, state, merged.spec);
  if (label !== null) {
    writes.push({ kind: 'labelNode', node: nodeName, label: READY_LABEL, value: label, ...(node.metadata.resourceVersion !== undefined ? { resourceVersion: node.metadata.resourceVersion } : {}) });
    const gpus = merged.spec.gpus;
    const target = targetOf('Node', node.metadata);
    if (label === 'true') {
      writes.push({
        kind: 'event',
        regarding: target,
        type: 'Normal',
        reason: EVENT_REASONS.nodeReady,
        message: `${gpus.length} GPU(s) ready for passthrough: ${gpus.map((g) => g.address).join(', ')}`,
      });
    } else if (gpus.length === 0) {
      writes.push({ kind: 'event', regarding: target, type: 'Normal', reason: EVENT_REASONS.nodeCleared, message: 'no GPU is desired for passthrough any more' });
    } else {
      const phases = new Map((state.status?.gpus ?? []).map((g) => [g.address, g]));
      const notReady = gpus
        .filter((g) => phases.get(g.address)?.phase !== 'Ready')
        .map((g) => `${g.address} ${phases.get(g.address)?.phase ?? 'Pending'}${phases.get(g.address)?.reason ? ` (${phases.get(g.address)?.reason})` : ''}`);
      writes.push({ kind: 'event', regarding: target, type: 'Warning', reason: EVENT_REASONS.nodeNotReady, message: `not ready: ${notReady.join(', ')}` });
    }
  }
  return writes;
}

function flippedTo(prev: readonly Condition[] | undefined, next: readonly Condition[] | undefined, type: string, status: 'True' | 'False'): Condition | undefined {
  const n = next?.find((c) => c.type === type);
  if (!n || n.status !== status) return undefined;
  const p = prev?.find((c) => c.type === type);
  return p?.status === status ? undefined : n;
}

function statusEvents(policy: GpuPassthrough, next: GpuPassthroughStatus, view: ClusterView): Write[] {
  const prev = policy.status;
  const target = targetOf('GpuPassthrough', policy.metadata);
  const out: Write[] = [];
  const ready = flippedTo(prev?.conditions, next.conditions, 'Ready', 'True');
  if (ready) out.push({ kind: 'event', regarding: target, type: 'Normal', reason: EVENT_REASONS.policyReady, message: ready.message });
  const degraded = flippedTo(prev?.conditions, next.conditions, 'Degraded', 'True');
  if (degraded) out.push({ kind: 'event', regarding: target, type: 'Warning', reason: EVENT_REASONS.policyDegraded, message: degraded.message });
  const conflict = flippedTo(prev?.conditions, next.conditions, 'Conflict', 'True');
  if (conflict) out.push({ kind: 'event', regarding: target, type: 'Warning', reason: EVENT_REASONS.policyConflict, message: conflict.message });
  // A release that waits for a pod says which pod, once per change of what it waits for.
  const progressing = next.conditions?.find((c) => c.type === 'Progressing');
  const prevProgressing = prev?.conditions?.find((c) => c.type === 'Progressing');
  if (progressing?.status === 'True' && progressing.reason === 'Releasing' && /in use by pod|a pod holds/.test(progressing.message) && prevProgressing?.message !== progressing.message) {
    out.push({ kind: 'event', regarding: target, type: 'Normal', reason: EVENT_REASONS.waitingForPod, message: progressing.message });
  }
  // Node events only for nodes that newly fail, so a persistent failure is reported once, not per resync.
  const before = new Set((prev?.failingNodes ?? []).map((f) => `${f.node}|${f.reason}`));
  for (const f of next.failingNodes ?? []) {
    if (before.has(`${f.node}|${f.reason}`)) continue;
    const node = view.nodes.find((n) => n.metadata.name === f.node);
    // A node without an agent is one fact about the node, however many policies match it: the same
    // message from every policy aggregates into one Event (with a count) instead of one per policy.
    const message = f.reason === 'AgentNotReporting' ? `no agent report from this node: ${f.message ?? 'no NodeGpuPassthrough status'}` : `${policy.metadata.name}: ${f.reason}${f.message ? `: ${f.message}` : ''}`;
    out.push({
      kind: 'event',
      regarding: targetOf('Node', node?.metadata ?? { name: f.node }),
      type: 'Warning',
      reason: EVENT_REASONS.nodeFailing,
      message,
    });
  }
  return out;
}

function kubevirtWrite(view: ClusterView): Write | undefined {
  const cr = view.kubevirt;
  if (!cr) return undefined;
  const change = planKubeVirt(cr, desiredKubeVirtDevices(view.policies, view.states.values()));
  if (!change) return undefined;
  return cr.metadata.namespace !== undefined
    ? { kind: 'updateKubeVirt', namespace: cr.metadata.namespace, name: cr.metadata.name, change }
    : { kind: 'updateKubeVirt', name: cr.metadata.name, change };
}

export function reconcileKubeVirt(view: ClusterView): Write[] {
  const w = kubevirtWrite(view);
  return w ? [w] : [];
}

/**
 * Finalizer, status and (for a deleting policy) KubeVirt clean-up of one policy. `merge` may be passed
 * in when the caller reconciles many policies over the same view.
 */
export function reconcilePolicy(policyName: string, view: ClusterView, merge?: ClusterMerge): Write[] {
  const policy = view.policies.find((p) => p.metadata.name === policyName);
  if (!policy) return [];
  const writes: Write[] = [];
  const rv = policy.metadata.resourceVersion;
  const decision = decideFinalizer(policy, view.nodes, view.states);

  if (decision.kind === 'addFinalizer') {
    const finalizers = [...(policy.metadata.finalizers ?? []), FINALIZER];
    writes.push(rv !== undefined ? { kind: 'addFinalizer', policy: policyName, finalizers, resourceVersion: rv } : { kind: 'addFinalizer', policy: policyName, finalizers });
  }

  if (decision.kind === 'removeFinalizer') {
    // GPUs are home; drop our KubeVirt entries first so a crash between the two writes leaves nothing behind.
    const kv = kubevirtWrite(view);
    if (kv) return [kv];
    const finalizers = (policy.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
    writes.push(rv !== undefined ? { kind: 'removeFinalizer', policy: policyName, finalizers, resourceVersion: rv } : { kind: 'removeFinalizer', policy: policyName, finalizers });
    writes.push({
      kind: 'event',
      regarding: targetOf('GpuPassthrough', policy.metadata),
      type: 'Normal',
      reason: EVENT_REASONS.released,
      message: 'every GPU of this policy is back on the host',
    });
    return writes;
  }

  const m = merge ?? mergeCluster(view.policies, view.nodes, view.states);
  const computed = computePolicyStatus({
    policy,
    nodes: view.nodes,
    states: view.states,
    merge: m,
    now: view.now,
    ...(decision.kind === 'waitForRelease' ? { pendingRelease: decision.pending } : {}),
  });
  const status = withResourceConflicts(computed, policy.status, resourceConflicts(policy, view), view.now);
  if (!policyStatusEqual(policy.status, status)) {
    // The precondition names the version we read; an addFinalizer just before moves it (and is itself fenced by it).
    const fenced = rv !== undefined && writes.length === 0;
    writes.push({ kind: 'patchPolicyStatus', policy: policyName, status, ...(fenced ? { resourceVersion: rv } : {}) });
    writes.push(...statusEvents(policy, status, view));
  }
  return writes;
}
