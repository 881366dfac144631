import type { GpuPassthrough, GpuPhase, NodeGpuPassthrough, NodeLike } from '../api/v1alpha1/index.js';
import { FINALIZER, isDeleting, resolvePolicySpec } from '../api/v1alpha1/index.js';
import { policyMatchesNode, selectGpus } from './select.js';

/**
 * The delete flow of a GpuPassthrough, as a decision: what the controller should do next.
 *
 *   live, no finalizer        → addFinalizer
 *   deleting, finalizer held  → waitForRelease while any of its GPUs is still in a node spec or not yet
 *                               back in phase Host; then removeFinalizer (plan.ts first removes its
 *                               KubeVirt entries, then drops the finalizer)
 *   anything else             → none
 *
 * A node that no longer exists releases nothing and holds nothing up: its NodeGpuPassthrough is
 * garbage-collected with it.
 */

/** The agent's reason for a GPU kept on vfio-pci by a wanted GPU of the same IOMMU group (src/agent/node-plan.ts). */
const SHARES_IOMMU_GROUP = 'SharesIommuGroup';

export interface PendingRelease {
  readonly node: string;
  readonly address: string;
  /** `InSpec`: the operator has not yet removed the claim; `AgentBehind`: the agent has not yet acted on the new spec. */
  readonly state: GpuPhase | 'InSpec' | 'AgentBehind';
  readonly reason?: string;
  /** The agent's message for the GPU, e.g. which pod holds it. */
  readonly message?: string;
}

export type FinalizerDecision =
  | { readonly kind: 'none' }
  | { readonly kind: 'addFinalizer' }
  | { readonly kind: 'waitForRelease'; readonly pending: readonly PendingRelease[] }
  | { readonly kind: 'removeFinalizer' };

export function hasFinalizer(policy: GpuPassthrough): boolean {
  return (policy.metadata.finalizers ?? []).includes(FINALIZER);
}

/**
 * GPUs of a deleting policy that are not back on the host yet. Once the claim is gone from the spec the
 * node object no longer says which policy held a GPU, so the candidates are the GPUs the policy's
 * selectors pick on the nodes it matches — a superset of what it can have held — minus any GPU another
 * policy now claims (handed over, not released).
 */
export function pendingReleases(
  policy: GpuPassthrough,
  nodes: readonly NodeLike[],
  states: ReadonlyMap<string, NodeGpuPassthrough>,
): PendingRelease[] {
  const name = policy.metadata.name;
  const spec = resolvePolicySpec(policy.spec);
  const pending: PendingRelease[] = [];
  for (const node of nodes) {
    const state = states.get(node.metadata.name);
    if (!state) continue;
    const specGpus = state.spec?.gpus ?? [];
    const candidates = new Set<string>();
    for (const g of specGpus) {
      if (g.policy === name) {
        pending.push({ node: node.metadata.name, address: g.address, state: 'InSpec' });
      }
    }
    if (policyMatchesNode(policy, node)) {
      for (const gpu of selectGpus(spec, state.status?.inventory ?? []).selected) candidates.add(gpu.address);
    }
    for (const g of specGpus) candidates.delete(g.address); // in spec: ours (counted above) or handed over
    if (candidates.size === 0) continue;
    const generation = state.metadata.generation;
    const observed = state.status?.observedGeneration;
    const behind = generation !== undefined && (observed === undefined || observed < generation);
    for (const address of [...candidates].sort()) {
      const gs = state.status?.gpus?.find((x) => x.address === address);
      if (behind && gs !== undefined && gs.phase !== 'Host') {
        // The status predates our spec change: "Ready" there says nothing about the release.
        pending.push({ node: node.metadata.name, address, state: 'AgentBehind' });
      } else if (gs !== undefined && gs.phase === 'Releasing' && gs.reason === SHARES_IOMMU_GROUP) {
        // Withdrawn and no longer this policy's: it stays on vfio-pci only because another policy wants a GPU
        // of its IOMMU group (vfio hands out a group whole), so it must not hold this policy's deletion.
        continue;
      } else if (gs !== undefined && gs.phase !== 'Host') {
        pending.push({
          node: node.metadata.name,
          address,
          state: gs.phase,
          ...(gs.reason !== undefined ? { reason: gs.reason } : {}),
          ...(gs.message !== undefined ? { message: gs.message } : {}),
        });
      }
    }
  }
  return pending;
}

export function decideFinalizer(
  policy: GpuPassthrough,
  nodes: readonly NodeLike[],
  states: ReadonlyMap<string, NodeGpuPassthrough>,
): FinalizerDecision {
  if (!isDeleting(policy)) return hasFinalizer(policy) ? { kind: 'none' } : { kind: 'addFinalizer' };
  if (!hasFinalizer(policy)) return { kind: 'none' };
  const pending = pendingReleases(policy, nodes, states);
  return pending.length > 0 ? { kind: 'waitForRelease', pending } : { kind: 'removeFinalizer' };
}
