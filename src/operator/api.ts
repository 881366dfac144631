import type { Gpu } from '../host/model.js';

/**
 * The handoff.dev/v1alpha1 API as TypeScript: the two kinds the operator and the agent exchange, the
 * KubeVirt subset we touch, names (GVK, plurals, label, annotation, finalizer) and runtime guards.
 *
 * Objects arrive from the API server as JSON. Fields with a CRD default are optional here because a
 * fake API server (or an object read before defaulting) may omit them; `resolvePolicySpec` applies the
 * same defaults the CRD declares, so the pure logic never guesses.
 */

export const GROUP = 'handoff.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export interface ResourceKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly listKind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortName: string;
  /** The CRD object name: `<plural>.<group>`. */
  readonly crdName: string;
}

export const GPU_PASSTHROUGH: ResourceKind = {
  group: GROUP,
  version: VERSION,
  kind: 'GpuPassthrough',
  listKind: 'GpuPassthroughList',
  plural: 'gpupassthroughs',
  singular: 'gpupassthrough',
  shortName: 'gpt',
  crdName: `gpupassthroughs.${GROUP}`,
};

export const NODE_GPU_PASSTHROUGH: ResourceKind = {
  group: GROUP,
  version: VERSION,
  kind: 'NodeGpuPassthrough',
  listKind: 'NodeGpuPassthroughList',
  plural: 'nodegpupassthroughs',
  singular: 'nodegpupassthrough',
  shortName: 'ngp',
  crdName: `nodegpupassthroughs.${GROUP}`,
};

/** KubeVirt's CR (namespaced, usually `kubevirt/kubevirt`); we only patch its permitted host devices. */
export const KUBEVIRT = {
  group: 'kubevirt.io',
  version: 'v1',
  kind: 'KubeVirt',
  plural: 'kubevirts',
  crdName: 'kubevirts.kubevirt.io',
} as const;

/** Finalizer on GpuPassthrough: deleting a policy first returns its GPUs to the host. */
export const FINALIZER = 'handoff.dev/release';
/** Node label for scheduling: `true` when every GPU desired on the node is Ready. */
export const READY_LABEL = 'handoff.dev/passthrough-ready';
/** Annotation on the KubeVirt CR: JSON list of the pciHostDevices entries we added (and may remove). */
export const KUBEVIRT_MANAGED_ANNOTATION = 'handoff.dev/managed-pci-host-devices';
/** Hard cap of status.failingNodes (mirrors the CRD's maxItems). */
export const MAX_FAILING_NODES = 20;

/** `metav1` timestamps: JSON gives strings; client-node's typed core APIs give Date objects. */
export type Timestamp = string | Date;

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: Timestamp;
  deletionTimestamp?: Timestamp;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
}

export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** metav1.Condition. */
export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

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

/** A policy spec with every CRD default applied. */
export interface ResolvedPolicySpec {
  readonly nodeSelector: LabelSelector;
  readonly gpus: Required<GpuSelector>;
  readonly resourceName: string; // '' = the device plugin's default
  readonly allowBootGpu: boolean;
  readonly paused: boolean;
  readonly kubevirtRegister: boolean;
  readonly priority: number;
}

export function resolvePolicySpec(spec: GpuPassthroughSpec | undefined): ResolvedPolicySpec {
  return {
    nodeSelector: spec?.nodeSelector ?? {},
    gpus: {
      vendorDevices: spec?.gpus?.vendorDevices ?? [],
      classes: spec?.gpus?.classes ?? [],
      addresses: spec?.gpus?.addresses ?? [],
    },
    resourceName: spec?.resourceName ?? '',
    allowBootGpu: spec?.allowBootGpu ?? false,
    paused: spec?.paused ?? false,
    kubevirtRegister: spec?.kubevirt?.register ?? true,
    priority: spec?.priority ?? 0,
  };
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

/** What the pure logic needs of a core/v1 Node (a V1Node fits). */
export interface NodeLike {
  metadata: Pick<ObjectMeta, 'name' | 'labels'> & { deletionTimestamp?: Timestamp; resourceVersion?: string; uid?: string };
}

/** The inventory entry the agent reports for a discovered GPU (class as `0xCCSSPP`). */
export function inventoryEntry(gpu: Gpu): InventoryGpu {
  const entry: InventoryGpu = {
    address: gpu.fn.address,
    vendorId: gpu.fn.vendorId,
    deviceId: gpu.fn.deviceId,
    class: `0x${gpu.fn.classCode.toString(16).padStart(6, '0')}`,
    bootGpu: gpu.isBootGpu,
  };
  if (gpu.fn.iommuGroup !== undefined) entry.iommuGroup = gpu.fn.iommuGroup;
  if (gpu.fn.numaNode !== undefined) entry.numaNode = gpu.fn.numaNode;
  return entry;
}

// ---------------------------------------------------------------- KubeVirt (the subset we read and write)

export interface PciHostDevice {
  pciVendorSelector: string; // `10DE:2331`
  resourceName: string;
  externalResourceProvider?: boolean;
}

export interface KubeVirtCr {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: {
    configuration?: {
      permittedHostDevices?: {
        pciHostDevices?: PciHostDevice[];
        [other: string]: unknown;
      };
      [other: string]: unknown;
    };
    [other: string]: unknown;
  };
}

// ---------------------------------------------------------------- guards

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}
function optional(v: unknown, check: (x: unknown) => boolean): boolean {
  return v === undefined || check(v);
}
function isStringMap(v: unknown): v is Record<string, string> {
  return isRecord(v) && Object.values(v).every((x) => typeof x === 'string');
}
function hasMeta(o: Record<string, unknown>): boolean {
  const m = o['metadata'];
  return isRecord(m) && typeof m['name'] === 'string' && m['name'] !== '' && optional(m['labels'], isStringMap);
}
function kindOk(o: Record<string, unknown>, kind: string): boolean {
  // Informer caches of some clients strip apiVersion/kind from list items; absent is fine, wrong is not.
  return optional(o['kind'], (k) => k === kind) && optional(o['apiVersion'], (a) => a === API_VERSION);
}

function isLabelSelector(v: unknown): v is LabelSelector {
  if (!isRecord(v)) return false;
  if (!optional(v['matchLabels'], isStringMap)) return false;
  return optional(
    v['matchExpressions'],
    (list) =>
      Array.isArray(list) &&
      list.every(
        (r) =>
          isRecord(r) &&
          typeof r['key'] === 'string' &&
          typeof r['operator'] === 'string' &&
          optional(r['values'], isStringArray),
      ),
  );
}

/**
 * Shape check deep enough that the pure logic cannot crash on the object. It does not re-run the CRD's
 * format rules: a malformed selector entry simply selects nothing (see select.ts).
 */
export function isGpuPassthrough(v: unknown): v is GpuPassthrough {
  if (!isRecord(v) || !hasMeta(v) || !kindOk(v, GPU_PASSTHROUGH.kind)) return false;
  const spec = v['spec'];
  if (!isRecord(spec)) return false;
  const gpus = spec['gpus'];
  return (
    optional(spec['nodeSelector'], isLabelSelector) &&
    optional(
      gpus,
      (g) =>
        isRecord(g) &&
        optional(g['vendorDevices'], isStringArray) &&
        optional(g['classes'], isStringArray) &&
        optional(g['addresses'], isStringArray),
    ) &&
    optional(spec['resourceName'], (x) => typeof x === 'string') &&
    optional(spec['allowBootGpu'], (x) => typeof x === 'boolean') &&
    optional(spec['paused'], (x) => typeof x === 'boolean') &&
    optional(spec['kubevirt'], (k) => isRecord(k) && optional(k['register'], (x) => typeof x === 'boolean')) &&
    optional(spec['priority'], (x) => typeof x === 'number' && Number.isInteger(x))
  );
}

export function isNodeGpuPassthrough(v: unknown): v is NodeGpuPassthrough {
  if (!isRecord(v) || !hasMeta(v) || !kindOk(v, NODE_GPU_PASSTHROUGH.kind)) return false;
  const spec = v['spec'];
  const specOk = optional(
    spec,
    (s) =>
      isRecord(s) &&
      optional(s['paused'], (x) => typeof x === 'boolean') &&
      optional(
        s['gpus'],
        (list) =>
          Array.isArray(list) &&
          list.every((g) => isRecord(g) && typeof g['address'] === 'string' && typeof g['policy'] === 'string'),
      ),
  );
  const status = v['status'];
  const statusOk = optional(
    status,
    (s) =>
      isRecord(s) &&
      optional(
        s['inventory'],
        (list) =>
          Array.isArray(list) &&
          list.every(
            (g) =>
              isRecord(g) &&
              typeof g['address'] === 'string' &&
              typeof g['vendorId'] === 'string' &&
              typeof g['deviceId'] === 'string' &&
              typeof g['class'] === 'string',
          ),
      ) &&
      optional(
        s['gpus'],
        (list) =>
          Array.isArray(list) &&
          list.every(
            (g) =>
              isRecord(g) &&
              typeof g['address'] === 'string' &&
              (GPU_PHASES as readonly unknown[]).includes(g['phase']),
          ),
      ),
  );
  return specOk && statusOk;
}

export function isKubeVirtCr(v: unknown): v is KubeVirtCr {
  if (!isRecord(v) || !hasMeta(v)) return false;
  const list = (v as unknown as KubeVirtCr).spec?.configuration?.permittedHostDevices?.pciHostDevices;
  return optional(
    list,
    (l) =>
      Array.isArray(l) &&
      l.every((d) => isRecord(d) && typeof d['pciVendorSelector'] === 'string' && typeof d['resourceName'] === 'string'),
  );
}

// ---------------------------------------------------------------- small shared helpers

/** Epoch ms of a metav1 timestamp; undefined when absent or unparseable. */
export function timeOf(t: Timestamp | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = t instanceof Date ? t.getTime() : Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}

export function isDeleting(obj: { metadata: { deletionTimestamp?: Timestamp } }): boolean {
  return obj.metadata.deletionTimestamp !== undefined && obj.metadata.deletionTimestamp !== null;
}
