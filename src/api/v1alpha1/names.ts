import type { ResourceRef } from '../../kube/port.js';

/**
 * Names of the handoff.dev/v1alpha1 API as the cluster sees them: group, version, kinds (as declared in
 * deploy/crds), and the finalizer, label and annotation the operator writes on other objects.
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

/** Finalizer on GpuPassthrough: deleting a policy first returns its GPUs to the host. */
export const FINALIZER = 'handoff.dev/release';
/** Node label for scheduling: `true` when every GPU desired on the node is Ready. */
export const READY_LABEL = 'handoff.dev/passthrough-ready';
/** Annotation on the KubeVirt CR: JSON list of the pciHostDevices entries we added (and may remove). */
export const KUBEVIRT_MANAGED_ANNOTATION = 'handoff.dev/managed-pci-host-devices';
/** Hard cap of status.failingNodes (mirrors the CRD's maxItems). */
export const MAX_FAILING_NODES = 20;

/** The KubeApi reference of a cluster-scoped kind. */
function refOf(kind: ResourceKind): ResourceRef {
  return { group: kind.group, version: kind.version, plural: kind.plural, kind: kind.kind, namespaced: false };
}

export const GPU_PASSTHROUGH_REF: ResourceRef = refOf(GPU_PASSTHROUGH);
export const NODE_GPU_PASSTHROUGH_REF: ResourceRef = refOf(NODE_GPU_PASSTHROUGH);
