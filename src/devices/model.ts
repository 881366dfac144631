import type { PciAddress } from '../core/pci-address.js';
import type { GpuKind } from '../host/model.js';
import type { NotReadyReason as HostNotReadyReason } from '../host/readiness.js';

/**
 * The device source: what this node offers, independent of how it is offered. Two front ends consume it —
 * the kubelet device plugin (src/deviceplugin, extended resources) and the DRA kubelet plugin (src/dra,
 * ResourceSlices) — and exactly one of them runs on a node (see `FrontEnd` in front-end.ts).
 * Everything here derives from a HostSnapshot (the engine's read model; no second discovery) plus two
 * host reads that discovery does not do: the pci.ids model name and the PCIe root of the sysfs path.
 */

/** The two health values; the strings are kubelet's device-plugin `Healthy`/`Unhealthy` constants. */
export const HEALTHY = 'Healthy';
export const UNHEALTHY = 'Unhealthy';
export type Health = typeof HEALTHY | typeof UNHEALTHY;

/** The host's readiness reasons, plus the device source's own: withdrawn for release, or its name's env var clashes. */
export type NotReadyReason = HostNotReadyReason | 'WITHDRAWN' | 'RESOURCE_ENV_CLASH';

/**
 * The facts of one GPU a front end publishes (DRA: as ResourceSlice attributes; device plugin: NUMA
 * topology). Every field comes from sysfs through discovery unless noted; absence is `undefined`.
 */
export interface GpuFacts {
  readonly address: PciAddress; // `resource.kubernetes.io/pciBusID`
  readonly name: string; // deviceName(address), e.g. gpu-0000-65-00-0
  readonly iommuGroup: number | undefined;
  readonly vendorId: string; // 4 lower-case hex digits
  readonly deviceId: string;
  readonly subsystemVendorId: string | undefined;
  readonly subsystemDeviceId: string | undefined;
  readonly classCode: number; // 24-bit, e.g. 0x030200
  readonly kind: GpuKind;
  /** The pci.ids device name (e.g. `GA102 [GeForce RTX 3090]`); undefined when the host has no entry. */
  readonly modelName: string | undefined;
  readonly numaNode: number | undefined;
  /**
   * The PCIe root complex above the GPU in the form `pci<domain>:<bus>` (e.g. `pci0000:64`): the first
   * directory under /sys/devices on the GPU's sysfs path — the value and meaning Kubernetes gives the
   * standard `resource.kubernetes.io/pcieRoot` attribute (k8s.io/dynamic-resource-allocation
   * deviceattribute). Undefined when the sysfs link cannot be read.
   */
  readonly pcieRoot: string | undefined;
  /** The firmware's boot GPU (boot_vga/boot_display or owner of the firmware framebuffer). */
  readonly bootGpu: boolean;
  /** Other functions of the same card (audio, USB, UCSI), found by discovery. */
  readonly companions: readonly PciAddress[];
  /** The driver bound now (`vfio-pci`, `nvidia`, ...); undefined when unbound. */
  readonly driver: string | undefined;
  /** Set on SR-IOV virtual functions: the physical function. */
  readonly physfn: PciAddress | undefined;
}

/** One GPU as the device source offers it: its address, health and (when Unhealthy) why. */
export interface SourceDevice {
  readonly address: PciAddress;
  readonly health: Health;
  /** Why the device is Unhealthy (for logs and status); `undefined` when Healthy. */
  readonly reason: NotReadyReason | undefined;
}

/**
 * What one claim or container gets for a set of GPUs, in neutral form: the front end turns it into its
 * wire shape (device plugin: ContainerAllocateResponse; DRA: the CDI device IDs of NodePrepareResources).
 * Everything stays valid while the GPUs stay on vfio-pci (group numbers and cdev names are stable then).
 */
export interface NeutralAllocation {
  /** The requested GPUs, in request order (KubeVirt pops PCI_RESOURCE_* addresses positionally). */
  readonly addresses: readonly PciAddress[];
  /** Their IOMMU groups, deduplicated, in request order. */
  readonly groups: readonly number[];
  /**
   * Device nodes to expose (host path = container path): `/dev/vfio/vfio`, `/dev/vfio/<group>` per group,
   * and with iommufd (`/dev/iommu` present) also `/dev/iommu` and `/dev/vfio/devices/vfioN` of every
   * vfio-bound function of those groups. Deduplicated.
   */
  readonly deviceNodes: readonly string[];
  /** Fully-qualified CDI device IDs, one per GPU (`handoff.dev/gpu=gpu-0000-65-00-0`), request order. */
  readonly cdiDevices: readonly string[];
}
