import type { PciAddress } from '../core/pci-address.js';
import type { Gpu, HostSnapshot } from '../host/model.js';
import type { KubeObject, ResourceRef } from '../kube/port.js';
import type { HostReader } from '../sysfs/port.js';

/** The DRA driver name (DRA.md). */
export const DRIVER_NAME = 'gpu.handoff.dev';

export const RESOURCE_SLICES: ResourceRef = { group: 'resource.k8s.io', version: 'v1', plural: 'resourceslices', kind: 'ResourceSlice', namespaced: false };
export const RESOURCE_CLAIMS: ResourceRef = { group: 'resource.k8s.io', version: 'v1', plural: 'resourceclaims', kind: 'ResourceClaim', namespaced: true };

/**
 * The DRA device name of a GPU: its PCI address as a DNS-1123 label, `0000:65:00.0` → `gpu-0000-65-00-0`
 * (DRA.md; ResourceSlice device names must be DNS labels).
 */
export function deviceName(address: string): string {
  return `gpu-${address.toLowerCase().replace(/[:.]/g, '-')}`;
}

/** A DeviceAttribute of resource.k8s.io/v1: exactly one of the four value fields. */
export type DeviceAttribute = { readonly string: string } | { readonly int: number } | { readonly bool: boolean } | { readonly version: string };
export type DeviceAttributes = Readonly<Record<string, DeviceAttribute>>;

/** Standard attribute names (k8s.io/dynamic-resource-allocation/deviceattribute). */
export const PCI_BUS_ID = 'resource.kubernetes.io/pciBusID';
export const PCIE_ROOT = 'resource.kubernetes.io/pcieRoot';

export interface GpuFacts {
  readonly gpu: Gpu;
  /** `pci<domain>:<bus>` of the root complex above the GPU, from the sysfs device path; undefined when unknown. */
  readonly pcieRoot: string | undefined;
  /** The pci.ids name, e.g. `AD102 [GeForce RTX 4090]`. */
  readonly model: string | undefined;
}

/**
 * The attributes of one GPU device. Our own ones are unqualified: the API qualifies them with the driver
 * name, so CEL reads `device.attributes["gpu.handoff.dev"].vendorID`. Values: vendor/device IDs as 4
 * lower-case hex digits, class as 6 hex digits (`030000`), numaNode and iommuGroup only when known.
 */
export function deviceAttributes(f: GpuFacts): DeviceAttributes {
  const fn = f.gpu.fn;
  const attrs: Record<string, DeviceAttribute> = {
    [PCI_BUS_ID]: { string: fn.address },
    vendorID: { string: fn.vendorId },
    deviceID: { string: fn.deviceId },
    class: { string: fn.classCode.toString(16).padStart(6, '0') },
    bootVGA: { bool: f.gpu.isBootGpu },
  };
  if (f.pcieRoot !== undefined) attrs[PCIE_ROOT] = { string: f.pcieRoot };
  if (f.model !== undefined) attrs['model'] = { string: f.model.slice(0, 64) };
  if (fn.numaNode !== undefined) attrs['numaNode'] = { int: fn.numaNode };
  if (fn.iommuGroup !== undefined) attrs['iommuGroup'] = { int: fn.iommuGroup };
  return attrs;
}

/**
 * `pci<dddd>:<bb>` from the resolved `sys/bus/pci/devices/<bdf>` link (`../../../devices/pci0000:00/…`),
 * as deviceattribute.GetPCIeRootAttributeByPCIBusID derives it.
 */
export async function pcieRootOf(host: HostReader, address: PciAddress): Promise<string | undefined> {
  const link = await host.readLink(`sys/bus/pci/devices/${address}`);
  return link?.split('/').find((p) => /^pci[0-9a-f]{4}:[0-9a-f]{2}$/.test(p));
}

export interface SliceDevice {
  readonly name: string;
  readonly attributes: DeviceAttributes;
}

export interface ResourceSlice extends KubeObject {
  spec: {
    driver: string;
    pool: { name: string; generation: number; resourceSliceCount: number };
    nodeName: string;
    devices: SliceDevice[];
  };
}

/** The GPUs of a snapshot this driver offers, in address order: every GPU with an IOMMU group, healthy (readable). */
export function sliceDevices(snapshot: HostSnapshot, facts: ReadonlyMap<string, GpuFacts>): SliceDevice[] {
  const unreadable = new Set((snapshot.unreadable ?? []).map((u) => u.address));
  return snapshot.gpus
    .filter((g) => g.fn.iommuGroup !== undefined && g.fn.physfn === undefined && !unreadable.has(g.fn.address))
    .map((g) => ({ name: deviceName(g.fn.address), attributes: deviceAttributes(facts.get(g.fn.address) ?? { gpu: g, pcieRoot: undefined, model: undefined }) }));
}

/** The one ResourceSlice of a node: pool = node name, one slice in the pool. */
export function resourceSlice(nodeName: string, devices: readonly SliceDevice[], generation: number): ResourceSlice {
  return {
    apiVersion: 'resource.k8s.io/v1',
    kind: 'ResourceSlice',
    metadata: { name: sliceName(nodeName) },
    spec: { driver: DRIVER_NAME, pool: { name: nodeName, generation, resourceSliceCount: 1 }, nodeName, devices: [...devices] },
  };
}

/** Deterministic: `<node>-gpu.handoff.dev`, cut to the 253 characters of a DNS subdomain. */
export function sliceName(nodeName: string): string {
  const suffix = `-${DRIVER_NAME}`;
  return `${nodeName.slice(0, 253 - suffix.length).replace(/[.-]+$/, '')}${suffix}`;
}
