import type { PciAddress } from '../core/pci-address.js';
import type { Gpu, HostSnapshot, PciFunction } from '../host/model.js';

import { functionMap } from '../host/lookup.js';
import { VFIO_PCI_DRIVER } from '../host/vendor.js';

/** The driver prepare binds (vendor.ts knows the variant drivers that count as VFIO too). */
export const VFIO_DRIVER = VFIO_PCI_DRIVER;

export type MemberRole = 'gpu' | 'companion' | 'bridge' | 'foreign';

export interface GroupMember {
  readonly fn: PciFunction;
  readonly role: MemberRole;
}

/**
 * Every function of the IOMMU group the GPU sits in, with its role for this GPU. A function is a
 * companion when discovery tied it to the card (same slot or device link); other GPUs of the same
 * group and their companions count as `gpu`/`companion` too, because vfio can only hand the group out
 * as a whole and they are the same kind of device. Anything else is foreign.
 */
export function groupMembers(snapshot: HostSnapshot, gpu: Gpu): readonly GroupMember[] {
  const groupId = gpu.fn.iommuGroup;
  if (groupId === undefined) return [{ fn: gpu.fn, role: 'gpu' }];
  const group = snapshot.groups.find((g) => g.id === groupId);
  const members = group?.members ?? [gpu.fn.address];
  const byAddress = functionIndex(snapshot);
  const gpusInGroup = snapshot.gpus.filter((g) => g.fn.iommuGroup === groupId);
  const gpuAddrs = new Set<PciAddress>(gpusInGroup.map((g) => g.fn.address));
  const companionAddrs = new Set<PciAddress>(gpusInGroup.flatMap((g) => g.companions));
  const out: GroupMember[] = [];
  for (const address of members) {
    const fn = byAddress.get(address);
    if (!fn) continue; // listed in the group but gone from the bus: nothing to move
    const role: MemberRole = gpuAddrs.has(address)
      ? 'gpu'
      : fn.isBridge
        ? 'bridge'
        : companionAddrs.has(address)
          ? 'companion'
          : 'foreign';
    out.push({ fn, role });
  }
  return out;
}

/** Endpoints are what vfio-pci must hold (or that must at least have no driver); bridges keep theirs. */
export function endpoints(members: readonly GroupMember[]): readonly GroupMember[] {
  return members.filter((m) => m.role !== 'bridge');
}

/** The GPUs' own card functions in a group (roles gpu and companion): the only functions prepare and release write. */
export function cardMembers(members: readonly GroupMember[]): readonly GroupMember[] {
  return members.filter((m) => m.role === 'gpu' || m.role === 'companion');
}

/** Every function by address (see src/host/lookup.ts). */
export function functionIndex(snapshot: HostSnapshot): ReadonlyMap<PciAddress, PciFunction> {
  return functionMap(snapshot);
}

export function describeClass(classCode: number): string {
  const base = classCode >> 16;
  const sub = (classCode >> 8) & 0xff;
  const known: Record<number, string> = {
    0x0300: 'VGA controller',
    0x0302: '3D controller',
    0x0380: 'display controller',
    0x0403: 'audio device',
    0x0480: 'multimedia controller',
    0x1080: 'encryption controller',
    0x0c03: 'USB controller',
    0x0c80: 'serial bus controller',
    0x0200: 'Ethernet controller',
    0x0108: 'NVMe controller',
    0x0604: 'PCI bridge',
    0x0680: 'bridge',
    0x1200: 'processing accelerator',
  };
  return known[(base << 8) | sub] ?? `class 0x${classCode.toString(16).padStart(6, '0')}`;
}

export function formatClass(classCode: number): string {
  return `0x${classCode.toString(16).padStart(6, '0')}`;
}
