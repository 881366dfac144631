import type { Condition, ObjectMeta } from '../meta.js';

/**
 * The handoff.dev/v1alpha1 kinds as TypeScript: GpuPassthrough (the cluster-wide policy) and
 * NodeGpuPassthrough (per node: spec written by the operator, status by the agent). The schema in
 * deploy/crds is the source of truth; `validate.ts` checks objects read from the API server against it.
 *
 * Fields with a CRD default are optional here because a fake API server (or an object read before
 * defaulting) may omit them; `resolvePolicySpec` (defaults.ts) applies the same defaults.
 */

// ---------------------------------------------------------------- GpuPassthrough

export type LabelSelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface LabelSelectorRequirement {
  key: string;
  operator: LabelSelectorOperator;
  values?: string[];
}

/** metav1.LabelSelector. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/** Any-of GPU selectors; all empty = every GPU. */
export interface GpuSelector {
  vendorDevices?: string[]; // `10de:2331`
  classes?: string[]; // `0x0302` (any prog-if) or `0x030200`
  addresses?: string[]; // `0000:41:00.0`
}

export interface GpuPassthroughSpec {
  nodeSelector?: LabelSelector;
  gpus?: GpuSelector;
  resourceName?: string;
  allowBootGpu?: boolean; // default false
  paused?: boolean; // default false
  kubevirt?: { register?: boolean }; // default register true
  priority?: number; // default 0
}

export interface FailingNode {
  node: string;
  reason: string;
  message?: string;
}

export interface GpuPassthroughStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  nodesMatched?: number;
  nodesReady?: number;
  gpusDesired?: number;
  gpusReady?: number;
  gpusFailed?: number;
  failingNodes?: FailingNode[];
  resources?: string[];
}

export interface GpuPassthrough {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: GpuPassthroughSpec;
  status?: GpuPassthroughStatus;
}

// ---------------------------------------------------------------- NodeGpuPassthrough

export interface DesiredGpu {
  address: string;
  resourceName?: string; // absent/'' = the device plugin's default
  policy: string;
  allowBootGpu?: boolean; // default false
}

export interface NodeGpuPassthroughSpec {
  gpus?: DesiredGpu[];
  paused?: boolean; // default false
}

export interface InventoryGpu {
  address: string;
  vendorId: string; // 4 lower-case hex digits
  deviceId: string;
  class: string; // `0x030000`
  bootGpu: boolean;
  iommuGroup?: number;
  numaNode?: number;
}

export const GPU_PHASES = ['Host', 'Preparing', 'Ready', 'Releasing', 'Failed'] as const;
export type GpuPhase = (typeof GPU_PHASES)[number];

export interface GpuStatus {
  address: string;
  phase: GpuPhase;
  reason?: string;
  message?: string;
  iommuGroup?: number;
  driver?: string;
  numaNode?: number;
  resourceName?: string;
  lastTransitionTime: string;
}

export interface NodeFacts {
  kernelRelease?: string;
  iommuEnabled?: boolean;
  framebuffer?: string;
  vfioPci?: 'Loaded' | 'Loadable' | 'Missing';
}

export interface NodeGpuPassthroughStatus {
  observedGeneration?: number;
  inventory?: InventoryGpu[];
  gpus?: GpuStatus[];
  node?: NodeFacts;
  conditions?: Condition[];
}

export interface NodeGpuPassthrough {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: NodeGpuPassthroughSpec;
  status?: NodeGpuPassthroughStatus;
}
