import type { Condition, ConditionStatus, FailingNode, GpuPassthrough, GpuPassthroughStatus, NodeGpuPassthrough, NodeLike } from '../api/v1alpha1/index.js';
import { MAX_FAILING_NODES, isDeleting, resolvePolicySpec } from '../api/v1alpha1/index.js';
import { canonicalJson } from './canonical.js';
import type { PendingRelease } from './finalizer.js';
import type { Claim, ClusterMerge } from './merge.js';

/**
 * The status of one GpuPassthrough, computed from the merge (what it claims) and the agents' reports
 * (where those GPUs stand). Pure; `now` is injected and only used when a condition's status flips, so
 * an unchanged world yields a byte-identical status and the controller writes nothing.
 */

export const CONDITION_TYPES = ['Ready', 'Progressing', 'Degraded', 'Conflict'] as const;
export type PolicyConditionType = (typeof CONDITION_TYPES)[number];

/** Stable reasons (tests and alerts match on them). */
export const REASONS = {
  allGpusReady: 'AllGpusReady',
  noGpusSelected: 'NoGpusSelected',
  preparing: 'Preparing',
  gpusFailed: 'GpusFailed',
  agentNotReporting: 'AgentNotReporting',
  deleting: 'Deleting',
  releasing: 'Releasing',
  released: 'Released',
  paused: 'Paused',
  converged: 'Converged',
  asExpected: 'AsExpected',
  conflict: 'GpuClaimedByOtherPolicy',
  noConflict: 'NoConflict',
  gpuFailed: 'GpuFailed',
  bootGpuNotAllowed: 'BootGpuNotAllowed',
  inUse: 'InUse',
} as const;

/** "n1/0000:18:00.0 Releasing (in use by pod vms/virt-launcher-vm1)" for one pending GPU. */
export function describePending(p: PendingRelease): string {
  const why = p.reason === REASONS.inUse && p.message ? p.message : p.reason;
  return `${p.node}/${p.address} ${p.state}${why ? ` (${why})` : ''}`;
}

/** GPUs that left a policy (its selector or a node's labels changed) and are still held on vfio-pci. */
export interface LeavingGpu {
  readonly node: string;
  readonly address: string;
  readonly reason?: string;
  readonly message?: string;
}

const MAX_MESSAGE_ITEMS = 5;

export interface PolicyStatusInput {
  readonly policy: GpuPassthrough;
  readonly nodes: readonly NodeLike[];
  readonly states: ReadonlyMap<string, NodeGpuPassthrough>;
  readonly merge: ClusterMerge;
  /** For a deleting policy: what is not back on the host yet (finalizer.ts). */
  readonly pendingRelease?: readonly PendingRelease[];
  readonly now: Date | number;
}

interface Counts {
  nodesMatched: number;
  nodesReady: number;
  gpusDesired: number;
  gpusReady: number;
  gpusFailed: number;
  agentsMissing: number;
  failing: FailingNode[];
  resources: Set<string>;
  leaving: LeavingGpu[];
}

function countFor(input: PolicyStatusInput): Counts {
  const name = input.policy.metadata.name;
  const claims = input.merge.claimsByPolicy.get(name) ?? [];
  const claimsByNode = new Map<string, Claim[]>();
  for (const c of claims) {
    const list = claimsByNode.get(c.node);
    if (list) list.push(c);
    else claimsByNode.set(c.node, [c]);
  }
  const counts: Counts = {
    nodesMatched: 0,
    nodesReady: 0,
    gpusDesired: claims.length,
    gpusReady: 0,
    gpusFailed: 0,
    agentsMissing: 0,
    failing: [],
    resources: new Set(),
    leaving: [],
  };
  const spec = resolvePolicySpec(input.policy.spec);
  if (spec.resourceName !== '' && claims.length > 0) counts.resources.add(spec.resourceName);

  for (const node of input.nodes) {
    const nodeName = node.metadata.name;
    const matched = input.merge.nodes.get(nodeName)?.matchedPolicies.includes(name) ?? false;
    const mine = claimsByNode.get(nodeName) ?? [];
    // GPUs that left this policy (a node relabelled out of it, a narrower selector) but are still held:
    // the agent keeps the resource name on a Releasing GPU, which ties it to this policy.
    if (spec.resourceName !== '') {
      const st = input.states.get(nodeName);
      const claimedHere = new Set((st?.spec?.gpus ?? []).map((g) => g.address));
      for (const g of st?.status?.gpus ?? []) {
        if (g.phase === 'Releasing' && g.resourceName === spec.resourceName && !claimedHere.has(g.address)) {
          counts.leaving.push({ node: nodeName, address: g.address, ...(g.reason !== undefined ? { reason: g.reason } : {}), ...(g.message !== undefined ? { message: g.message } : {}) });
        }
      }
    }
    if (!matched && mine.length === 0) continue;
    counts.nodesMatched++;
    const state = input.states.get(nodeName);
    if (state?.status?.inventory === undefined) {
      counts.agentsMissing++;
      counts.failing.push({
        node: nodeName,
        reason: REASONS.agentNotReporting,
        message: state ? 'the node agent has not reported an inventory yet' : 'no NodeGpuPassthrough for this node',
      });
      continue;
    }
    const inSpec = new Set((state.spec?.gpus ?? []).filter((g) => g.policy === name).map((g) => g.address));
    let ready = 0;
    const failed: string[] = [];
    let firstReason: string | undefined;
    for (const c of mine) {
      const gs = state.status.gpus?.find((g) => g.address === c.address);
      if (gs?.resourceName) counts.resources.add(gs.resourceName);
      if (gs?.phase === 'Ready' && inSpec.has(c.address)) ready++;
      else if (gs?.phase === 'Failed') {
        firstReason ??= gs.reason;
        failed.push(`${c.address}: ${gs.reason ?? REASONS.gpuFailed}${gs.message ? ` (${gs.message})` : ''}`);
      }
    }
    counts.gpusReady += ready;
    counts.gpusFailed += failed.length;
    if (ready === mine.length) counts.nodesReady++;
    if (failed.length > 0) {
      counts.failing.push({ node: nodeName, reason: firstReason ?? REASONS.gpuFailed, message: summarise(failed) });
    }
  }
  return counts;
}

function summarise(items: readonly string[]): string {
  const shown = items.slice(0, MAX_MESSAGE_ITEMS).join('; ');
  const more = items.length - MAX_MESSAGE_ITEMS;
  return more > 0 ? `${shown}; and ${more} more` : shown;
}

interface ConditionDraft {
  readonly type: PolicyConditionType;
  readonly status: ConditionStatus;
  readonly reason: string;
  readonly message: string;
}

function drafts(input: PolicyStatusInput, c: Counts): ConditionDraft[] {
  const name = input.policy.metadata.name;
  const spec = resolvePolicySpec(input.policy.spec);
  const conflicts = input.merge.conflictsByPolicy.get(name) ?? [];
  const pendingGpus = c.gpusDesired - c.gpusReady - c.gpusFailed;
  const out: ConditionDraft[] = [];

  if (isDeleting(input.policy)) {
    const pending = input.pendingRelease ?? [];
    out.push({ type: 'Ready', status: 'False', reason: REASONS.deleting, message: 'the policy is being deleted' });
    out.push(
      pending.length > 0
        ? {
            type: 'Progressing',
            status: 'True',
            reason: REASONS.releasing,
            message: `${pending.length} GPU(s) not back on the host: ${summarise(pending.map(describePending))}`,
          }
        : { type: 'Progressing', status: 'False', reason: REASONS.released, message: 'every GPU is back on the host' },
    );
  } else {
    const skippedBoot = input.merge.skippedBootGpusByPolicy?.get(name) ?? [];
    if (c.gpusDesired === 0) {
      const why = [`${c.nodesMatched} node(s) matched`];
      if (c.agentsMissing > 0) why.push(`${c.agentsMissing} without an agent report`);
      if (conflicts.length > 0) why.push(`${conflicts.length} GPU(s) held by other policies`);
      if (skippedBoot.length > 0) why.push(`${skippedBoot.length} boot GPU(s) skipped: ${bootGpuHint(skippedBoot, input.merge)}`);
      // The most telling reason: a boot GPU this policy may not take says more than "nothing selected".
      const reason = skippedBoot.length > 0 && conflicts.length === 0 && c.agentsMissing === 0 ? REASONS.bootGpuNotAllowed : REASONS.noGpusSelected;
      out.push({ type: 'Ready', status: 'False', reason, message: `no GPU claimed: ${why.join(', ')}` });
    } else if (c.gpusReady === c.gpusDesired && c.agentsMissing === 0) {
      out.push({
        type: 'Ready',
        status: 'True',
        reason: REASONS.allGpusReady,
        message: `${c.gpusReady} GPU(s) Ready on ${c.nodesReady} node(s)`,
      });
    } else {
      const reason = c.gpusFailed > 0 ? REASONS.gpusFailed : c.agentsMissing > 0 && pendingGpus === 0 ? REASONS.agentNotReporting : REASONS.preparing;
      // The message says why it is not Ready, never only a count that reads like success.
      const parts = [`${c.gpusReady} of ${c.gpusDesired} GPU(s) Ready`];
      if (c.agentsMissing > 0) {
        const missing = c.failing.filter((f) => f.reason === REASONS.agentNotReporting).map((f) => f.node);
        parts.push(`${c.agentsMissing} matched node(s) without an agent report: ${summarise(missing)}`);
      }
      if (c.gpusFailed > 0) parts.push(`${c.gpusFailed} Failed`);
      if (pendingGpus > 0) parts.push(`${pendingGpus} on their way to vfio-pci`);
      out.push({ type: 'Ready', status: 'False', reason, message: parts.join('; ') });
    }
    if (spec.paused) {
      out.push({ type: 'Progressing', status: 'False', reason: REASONS.paused, message: 'the policy is paused: no changes are made' });
    } else if (pendingGpus > 0) {
      out.push({ type: 'Progressing', status: 'True', reason: REASONS.preparing, message: `${pendingGpus} GPU(s) on their way to vfio-pci` });
    } else if (c.leaving.length > 0) {
      out.push({
        type: 'Progressing',
        status: 'True',
        reason: REASONS.releasing,
        message: `${c.leaving.length} GPU(s) no longer selected by this policy still on vfio-pci: ${summarise(
          c.leaving.map((g) => describePending({ node: g.node, address: g.address, state: 'Releasing', ...(g.reason !== undefined ? { reason: g.reason } : {}), ...(g.message !== undefined ? { message: g.message } : {}) })),
        )}`,
      });
    } else {
      out.push({ type: 'Progressing', status: 'False', reason: REASONS.converged, message: 'no GPU is moving' });
    }
  }

  if (c.gpusFailed > 0) {
    out.push({ type: 'Degraded', status: 'True', reason: REASONS.gpusFailed, message: `${c.gpusFailed} GPU(s) Failed on ${c.failing.filter((f) => f.reason !== REASONS.agentNotReporting).length} node(s)` });
  } else if (c.agentsMissing > 0) {
    out.push({ type: 'Degraded', status: 'True', reason: REASONS.agentNotReporting, message: `${c.agentsMissing} matched node(s) without an agent report` });
  } else {
    out.push({ type: 'Degraded', status: 'False', reason: REASONS.asExpected, message: 'no GPU failed' });
  }

  out.push(
    conflicts.length > 0
      ? {
          type: 'Conflict',
          status: 'True',
          reason: REASONS.conflict,
          message: `${conflicts.length} GPU(s) claimed by another policy: ${summarise(conflicts.map((x) => `${x.node}/${x.address} held by ${x.winner}`))}`,
        }
      : { type: 'Conflict', status: 'False', reason: REASONS.noConflict, message: 'no GPU selected by this policy is held by another' },
  );
  return out;
}

/** "n1/0000:03:00.0 is a boot GPU and spec.allowBootGpu is false here (held by policy console-gpus)". */
function bootGpuHint(skipped: readonly { node: string; address: string }[], merge: ClusterMerge): string {
  return summarise(
    skipped.map((s) => {
      const holder = merge.nodes.get(s.node)?.claims.find((c) => c.address === s.address)?.policy;
      return `${s.node}/${s.address} is a boot GPU and this policy does not set allowBootGpu${holder ? ` (policy ${holder} holds it)` : ''}`;
    }),
  );
}

function isoOf(now: Date | number): string {
  return (typeof now === 'number' ? new Date(now) : now).toISOString();
}

/**
 * metav1 condition semantics: lastTransitionTime moves only when status flips; reason, message and
 * observedGeneration are refreshed without moving it.
 */
export function applyCondition(
  previous: readonly Condition[] | undefined,
  draft: { type: string; status: ConditionStatus; reason: string; message: string },
  now: Date | number,
  generation: number | undefined,
): Condition {
  const prev = previous?.find((c) => c.type === draft.type);
  const cond: Condition = {
    type: draft.type,
    status: draft.status,
    reason: draft.reason,
    message: draft.message,
    lastTransitionTime: prev && prev.status === draft.status ? prev.lastTransitionTime : isoOf(now),
  };
  if (generation !== undefined) cond.observedGeneration = generation;
  return cond;
}

export function computePolicyStatus(input: PolicyStatusInput): GpuPassthroughStatus {
  const c = countFor(input);
  const generation = input.policy.metadata.generation;
  const previous = input.policy.status?.conditions;
  const status: GpuPassthroughStatus = {
    conditions: drafts(input, c).map((d) => applyCondition(previous, d, input.now, generation)),
    nodesMatched: c.nodesMatched,
    nodesReady: c.nodesReady,
    gpusDesired: c.gpusDesired,
    gpusReady: c.gpusReady,
    gpusFailed: c.gpusFailed,
    failingNodes: c.failing.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0)).slice(0, MAX_FAILING_NODES),
    resources: [...c.resources].sort(),
  };
  if (generation !== undefined) status.observedGeneration = generation;
  return status;
}

export function policyStatusEqual(a: GpuPassthroughStatus | undefined, b: GpuPassthroughStatus | undefined): boolean {
  return canonicalJson(a ?? {}) === canonicalJson(b ?? {});
}

export function conditionOf(status: GpuPassthroughStatus | undefined, type: PolicyConditionType): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}
