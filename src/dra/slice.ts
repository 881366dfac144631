import { gpuFacts } from '../devices/facts.js';
import type { GpuFacts } from '../devices/model.js';
import { deviceName } from '../devices/names.js';
import type { HostSnapshot } from '../host/model.js';
import type { KubeObject, ResourceRef } from '../kube/port.js';

export { deviceName };

/** The DRA driver name (DRA.md). */
export const DRIVER_NAME = 'gpu.handoff.dev';

export const RESOURCE_SLICES: ResourceRef = { group: 'resource.k8s.io', version: 'v1', plural: 'resourceslices', kind: 'ResourceSlice', namespaced: false };
export const RESOURCE_CLAIMS: ResourceRef = { group: 'resource.k8s.io', version: 'v1', plural: 'resourceclaims', kind: 'ResourceClaim', namespaced: true };

/** A DeviceAttribute of resource.k8s.io/v1: exactly one of the four value fields. */
export type DeviceAttribute = { readonly string: string } | { readonly int: number } | { readonly bool: boolean } | { readonly version: string };
export type DeviceAttributes = Readonly<Record<string, DeviceAttribute>>;

/** Standard attribute names (k8s.io/dynamic-resource-allocation/deviceattribute). */
export const PCI_BUS_ID = 'resource.kubernetes.io/pciBusID';
export const PCIE_ROOT = 'resource.kubernetes.io/pcieRoot';

/**
 * The attributes of one GPU device. Our own ones are unqualified: the API qualifies them with the driver
 * name, so CEL reads `device.attributes["gpu.handoff.dev"].vendorID`. Values: vendor/device IDs as 4
 * lower-case hex digits, class as 6 hex digits (`030000`), numaNode and iommuGroup only when known.
 */
export function deviceAttributes(f: GpuFacts): DeviceAttributes {
  const attrs: Record<string, DeviceAttribute> = {
    [PCI_BUS_ID]: { string: f.address },
    vendorID: { string: f.vendorId },
    deviceID: { string: f.deviceId },
    class: { string: f.classCode.toString(16).padStart(6, '0') },
    bootVGA: { bool: f.bootGpu },
  };
  if (f.pcieRoot !== undefined) attrs[PCIE_ROOT] = { string: f.pcieRoot };
  // A string attribute value is at most 64 characters (resource.k8s.io/v1 DeviceAttributeMaxValueLength).
  if (f.modelName !== undefined) attrs['model'] = { string: f.modelName.slice(0, 64) };
  if (f.numaNode !== undefined) attrs['numaNode'] = { int: f.numaNode };
  if (f.iommuGroup !== undefined) attrs['iommuGroup'] = { int: f.iommuGroup };
  return attrs;
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
    .map((g) => ({ name: deviceName(g.fn.address), attributes: deviceAttributes(facts.get(g.fn.address) ?? gpuFacts(g)) }));
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
