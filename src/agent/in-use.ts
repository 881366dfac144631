import type { HostSnapshot } from '../host/model.js';
import type { DeviceHolder } from './pod-resources.js';

/**
 * The GPUs kubelet's PodResources says pods hold, as GPU addresses. Device IDs are whatever the plugin
 * that advertised them chose: ours are GPU addresses, but KubeVirt's built-in PCI plugin (virt-handler
 * `constructDPIdevices`) and older NVIDIA plugins use the IOMMU group number, and a plugin may name
 * another function of the group. A GPU counts as held when any held ID is its address, the address of a
 * function in its IOMMU group, or its group number — the whole group goes to the VM either way. Pure.
 */
export function gpusInUse(snapshot: Pick<HostSnapshot, 'gpus' | 'functions'>, holders: readonly DeviceHolder[]): Set<string> {
  const groupOfAddress = new Map(snapshot.functions.filter((f) => f.iommuGroup !== undefined).map((f) => [f.address as string, f.iommuGroup!]));
  const heldGroups = new Set<number>();
  const heldAddresses = new Set<string>();
  for (const h of holders) {
    const id = h.deviceId;
    heldAddresses.add(id);
    if (/^\d+$/.test(id)) heldGroups.add(Number(id));
    const group = groupOfAddress.get(id);
    if (group !== undefined) heldGroups.add(group);
  }
  const out = new Set<string>();
  for (const gpu of snapshot.gpus) {
    if (heldAddresses.has(gpu.fn.address) || (gpu.fn.iommuGroup !== undefined && heldGroups.has(gpu.fn.iommuGroup))) out.add(gpu.fn.address);
  }
  return out;
}
