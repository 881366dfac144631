import type { NodeGpuPassthrough, NodeGpuPassthroughSpec, NodeLike } from '../api/v1alpha1/index.js';
import { READY_LABEL } from '../api/v1alpha1/index.js';

/**
 * The scheduling label `handoff.dev/passthrough-ready` on a Node. Pure.
 *
 * `true` when the node has at least one desired GPU and every one of them is reported Ready; `false`
 * otherwise. A node that never carried the label and is not ready is left unlabelled: writing `false`
 * there says nothing a scheduler needs (no label ≠ ready) and would cost one write per node in the
 * benchmark's 3-writes-per-node budget.
 */

export type ReadyLabelValue = 'true' | 'false';

/** Readiness judged against `desired` (the spec about to be written) when given, else the stored spec. */
export function nodeReady(state: NodeGpuPassthrough | undefined, desired?: NodeGpuPassthroughSpec): boolean {
  const gpus = (desired ?? state?.spec)?.gpus ?? [];
  if (gpus.length === 0) return false;
  const phases = new Map((state?.status?.gpus ?? []).map((g) => [g.address, g.phase]));
  return gpus.every((g) => phases.get(g.address) === 'Ready');
}

export function readyLabelValue(state: NodeGpuPassthrough | undefined, desired?: NodeGpuPassthroughSpec): ReadyLabelValue {
  return nodeReady(state, desired) ? 'true' : 'false';
}

/** The label value to write, or null when the node already says the right thing. */
export function readyLabelChange(
  node: NodeLike,
  state: NodeGpuPassthrough | undefined,
  desired?: NodeGpuPassthroughSpec,
): ReadyLabelValue | null {
  const want = readyLabelValue(state, desired);
  const have = node.metadata.labels?.[READY_LABEL];
  if (have === want) return null;
  if (have === undefined && want === 'false') return null;
  return want;
}
