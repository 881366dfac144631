import { pciAddressParts, type PciAddress } from '../core/pci-address.js';
import type { PciFunction } from './model.js';

/** `dddd:bb:dd` — the slot (physical device) part of an address. */
export function slotOf(address: PciAddress): string {
  return address.slice(0, address.lastIndexOf('.'));
}

/**
 * Companion functions of a GPU: the other endpoints of the same physical card that must travel with
 * it (HDMI audio, Turing's USB and UCSI). A companion is a function of the same slot that is either
 * in the GPU's IOMMU group (both undefined counts when the IOMMU is off) or the target of one of the
 * GPU's `consumer:pci:<bdf>` device links. Functions of other slots are never companions — in the
 * GPU's group they are foreign devices, which the verdict must name. Bridges, SR-IOV VFs and other
 * GPUs are excluded: bridges stay on pcieport, VFs belong to their PF, and a GPU is handed off on
 * its own account.
 */
export function findCompanions(
  gpu: PciFunction,
  functions: readonly PciFunction[],
  consumers: readonly PciAddress[],
  isGpu: (fn: PciFunction) => boolean,
): PciAddress[] {
  const slot = slotOf(gpu.address);
  const linked = new Set<string>(consumers);
  const out: PciAddress[] = [];
  for (const fn of functions) {
    if (fn.address === gpu.address || slotOf(fn.address) !== slot) continue;
    if (fn.isBridge || fn.physfn !== undefined || isGpu(fn)) continue;
    if (fn.iommuGroup === gpu.iommuGroup || linked.has(fn.address)) out.push(fn.address);
  }
  return out.sort((a, b) => pciAddressParts(a).fn - pciAddressParts(b).fn);
}

const CONSUMER_LINK = /^consumer:pci:(.+)$/;

/** Extracts the `consumer:pci:<bdf>` targets from a device directory listing. */
export function consumerLinkTargets(entries: readonly string[], parse: (raw: string) => PciAddress | undefined): PciAddress[] {
  const out: PciAddress[] = [];
  for (const e of entries) {
    const m = CONSUMER_LINK.exec(e);
    if (!m) continue;
    const addr = parse(m[1]!);
    if (addr) out.push(addr);
  }
  return out;
}
