import type { Gpu } from '../../host/model.js';
import type { InventoryGpu } from './types.js';

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
