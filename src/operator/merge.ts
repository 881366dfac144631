import type { DesiredGpu, GpuPassthrough, InventoryGpu, NodeGpuPassthrough, NodeGpuPassthroughSpec, NodeLike } from '../api/v1alpha1/index.js';
import { isDeleting, resolvePolicySpec, timeOf } from '../api/v1alpha1/index.js';
import { policyMatchesNode, selectGpus } from './select.js';

/**
 * Merges every GpuPassthrough into the desired spec of each NodeGpuPassthrough. Pure and per node:
 * a node's desired spec depends only on the policies, its labels and its own inventory, so the
 * controller can reconcile nodes independently.
 *
 * Rules:
 *  - A policy being deleted claims nothing (its GPUs go back to the host; the finalizer waits for that).
 *  - A paused policy keeps exactly the claims the node spec already gives it — even if its selectors or
 *    the labels changed since — and makes no new ones. Its claims are fixed before anyone else's, so an
 *    active policy that selects the same GPU gets a Conflict rather than taking the GPU over.
 *  - Active policies claim the GPUs they select in the agent-reported inventory (no inventory yet: no
 *    claims; the boot GPU only with allowBootGpu). A GPU selected by several goes to the winner of
 *    `comparePolicies`; each loser gets a Conflict entry.
 */

export interface Claim {
  readonly node: string;
  readonly address: string;
  readonly policy: string;
  readonly resourceName: string; // '' = the device plugin's default
  readonly allowBootGpu: boolean;
}

export interface Conflict {
  readonly node: string;
  readonly address: string;
  /** The policy that lost the GPU. */
  readonly policy: string;
  readonly winner: string;
}

export interface SkippedBootGpu {
  readonly node: string;
  readonly address: string;
  readonly policy: string;
}

export interface NodeMerge {
  readonly node: string;
  /** The desired spec with explicit defaults, gpus sorted by address: compare with `nodeSpecsEqual`. */
  readonly spec: Required<NodeGpuPassthroughSpec> & { gpus: DesiredGpu[] };
  readonly claims: readonly Claim[];
  readonly conflicts: readonly Conflict[];
  /** Policies (not being deleted) whose nodeSelector matches the node. */
  readonly matchedPolicies: readonly string[];
  readonly skippedBootGpus: readonly SkippedBootGpu[];
  /** Whether the agent has reported an inventory (without one no active policy can claim anything). */
  readonly inventoryKnown: boolean;
}

/**
 * Conflict order, winner first: higher priority, then older creationTimestamp, then name. Total and
 * deterministic, so every operator replica (and every reconcile) picks the same winner.
 */
export function comparePolicies(a: GpuPassthrough, b: GpuPassthrough): number {
  const pa = resolvePolicySpec(a.spec).priority;
  const pb = resolvePolicySpec(b.spec).priority;
  if (pa !== pb) return pb - pa;
  // An object without a timestamp has not been persisted yet: it is the newest.
  const ta = timeOf(a.metadata.creationTimestamp) ?? Number.POSITIVE_INFINITY;
  const tb = timeOf(b.metadata.creationTimestamp) ?? Number.POSITIVE_INFINITY;
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

function desiredOf(c: Claim): DesiredGpu {
  const d: DesiredGpu = { address: c.address, policy: c.policy, allowBootGpu: c.allowBootGpu };
  if (c.resourceName !== '') d.resourceName = c.resourceName;
  return d;
}

export function mergeNode(
  policies: readonly GpuPassthrough[],
  node: NodeLike,
  state: NodeGpuPassthrough | undefined,
): NodeMerge {
  const nodeName = node.metadata.name;
  const live = policies.filter((p) => !isDeleting(p));
  const byName = new Map(live.map((p) => [p.metadata.name, p]));
  const inventory: readonly InventoryGpu[] | undefined = state?.status?.inventory;
  const claims = new Map<string, Claim>();
  const conflicts: Conflict[] = [];
  const skippedBootGpus: SkippedBootGpu[] = [];

  // 1. Paused policies: freeze what the spec already gives them.
  for (const cur of state?.spec?.gpus ?? []) {
    const owner = byName.get(cur.policy);
    if (!owner || !resolvePolicySpec(owner.spec).paused || claims.has(cur.address)) continue;
    claims.set(cur.address, {
      node: nodeName,
      address: cur.address,
      policy: cur.policy,
      resourceName: cur.resourceName ?? '',
      allowBootGpu: cur.allowBootGpu ?? false,
    });
  }

  // 2. Active policies in conflict order: the first to select a free GPU gets it.
  const matchedPolicies: string[] = [];
  const ordered = [...live].sort(comparePolicies);
  for (const policy of ordered) {
    if (!policyMatchesNode(policy, node)) continue;
    matchedPolicies.push(policy.metadata.name);
    const spec = resolvePolicySpec(policy.spec);
    if (spec.paused || !inventory) continue;
    const { selected, skippedBootGpus: skipped } = selectGpus(spec, inventory);
    for (const gpu of skipped) skippedBootGpus.push({ node: nodeName, address: gpu.address, policy: policy.metadata.name });
    for (const gpu of selected) {
      const holder = claims.get(gpu.address);
      if (holder) {
        conflicts.push({ node: nodeName, address: gpu.address, policy: policy.metadata.name, winner: holder.policy });
        continue;
      }
      claims.set(gpu.address, {
        node: nodeName,
        address: gpu.address,
        policy: policy.metadata.name,
        resourceName: spec.resourceName,
        allowBootGpu: spec.allowBootGpu,
      });
    }
  }

  const sorted = [...claims.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  // The agent must hold still only when everything it manages here belongs to paused policies.
  const paused = sorted.length > 0 && sorted.every((c) => resolvePolicySpec(byName.get(c.policy)?.spec).paused);
  return {
    node: nodeName,
    spec: { gpus: sorted.map(desiredOf), paused },
    claims: sorted,
    conflicts,
    matchedPolicies: matchedPolicies.sort(),
    skippedBootGpus,
    inventoryKnown: inventory !== undefined,
  };
}

export interface ClusterMerge {
  readonly nodes: ReadonlyMap<string, NodeMerge>;
  readonly claimsByPolicy: ReadonlyMap<string, readonly Claim[]>;
  readonly conflictsByPolicy: ReadonlyMap<string, readonly Conflict[]>;
  /** Boot GPUs a policy selected but may not take (no allowBootGpu), by policy. */
  readonly skippedBootGpusByPolicy?: ReadonlyMap<string, readonly SkippedBootGpu[]>;
}

/** `mergeNode` over every node, indexed by policy for the status computation. */
export function mergeCluster(
  policies: readonly GpuPassthrough[],
  nodes: readonly NodeLike[],
  states: ReadonlyMap<string, NodeGpuPassthrough>,
): ClusterMerge {
  const out = new Map<string, NodeMerge>();
  const claimsByPolicy = new Map<string, Claim[]>();
  const conflictsByPolicy = new Map<string, Conflict[]>();
  const skippedBootGpusByPolicy = new Map<string, SkippedBootGpu[]>();
  for (const node of nodes) {
    const m = mergeNode(policies, node, states.get(node.metadata.name));
    out.set(m.node, m);
    for (const c of m.claims) pushTo(claimsByPolicy, c.policy, c);
    for (const c of m.conflicts) pushTo(conflictsByPolicy, c.policy, c);
    for (const c of m.skippedBootGpus) pushTo(skippedBootGpusByPolicy, c.policy, c);
  }
  return { nodes: out, claimsByPolicy, conflictsByPolicy, skippedBootGpusByPolicy };
}

function pushTo<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function normalisedGpus(spec: NodeGpuPassthroughSpec | undefined): string[] {
  return (spec?.gpus ?? [])
    .map((g) => JSON.stringify([g.address, g.policy, g.resourceName ?? '', g.allowBootGpu ?? false]))
    .sort();
}

/**
 * Equality up to CRD defaults and order, so the API server's defaulting (allowBootGpu: false, paused:
 * false) never looks like drift and causes a write on every reconcile.
 */
export function nodeSpecsEqual(a: NodeGpuPassthroughSpec | undefined, b: NodeGpuPassthroughSpec | undefined): boolean {
  if ((a?.paused ?? false) !== (b?.paused ?? false)) return false;
  const ga = normalisedGpus(a);
  const gb = normalisedGpus(b);
  return ga.length === gb.length && ga.every((x, i) => x === gb[i]);
}
