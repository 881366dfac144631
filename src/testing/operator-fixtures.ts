import type { GpuPassthrough, GpuPassthroughSpec, GpuPhase, GpuStatus, InventoryGpu, NodeGpuPassthrough, NodeGpuPassthroughSpec, NodeLike } from '../api/v1alpha1/index.js';
import { API_VERSION } from '../api/v1alpha1/index.js';

/**
 * Small builders of API objects for tests, the demo and the benchmark (pure; no I/O). Defaults are the
 * minimum a real API server would hold: a name, a creationTimestamp, generation 1.
 */

export function policy(
  name: string,
  spec: GpuPassthroughSpec = {},
  meta: Partial<GpuPassthrough['metadata']> = {},
): GpuPassthrough {
  return {
    apiVersion: API_VERSION,
    kind: 'GpuPassthrough',
    metadata: { name, generation: 1, creationTimestamp: '2026-01-01T00:00:00Z', ...meta },
    spec,
  };
}

export function node(name: string, labels: Record<string, string> = {}): NodeLike {
  return { metadata: { name, labels } };
}

/** A GPU in the agent's inventory; `n` picks bus `0x41 + n`, e.g. `gpu(0)` is 0000:41:00.0. */
export function gpu(n: number, over: Partial<InventoryGpu> = {}): InventoryGpu {
  return {
    address: `0000:${(0x41 + n).toString(16).padStart(2, '0')}:00.0`,
    vendorId: '10de',
    deviceId: '2331',
    class: '0x030200',
    bootGpu: false,
    iommuGroup: 40 + n,
    numaNode: 0,
    ...over,
  };
}

export function gpuStatus(address: string, phase: GpuPhase, over: Partial<GpuStatus> = {}): GpuStatus {
  return { address, phase, lastTransitionTime: '2026-01-01T00:00:00Z', ...over };
}

export function nodeState(
  name: string,
  inventory: InventoryGpu[] | undefined,
  spec: NodeGpuPassthroughSpec = {},
  gpus: GpuStatus[] = [],
  meta: Partial<NodeGpuPassthrough['metadata']> = {},
): NodeGpuPassthrough {
  const state: NodeGpuPassthrough = {
    apiVersion: API_VERSION,
    kind: 'NodeGpuPassthrough',
    metadata: { name, generation: 1, ...meta },
    spec,
  };
  if (inventory !== undefined) state.status = { observedGeneration: meta.generation ?? 1, inventory, gpus };
  return state;
}
