import { pciAddressParts, type PciAddress } from '../core/pci-address.js';
import type { PciFunction } from './model.js';
import { isCardFunction, slotOf } from './vendor.js';

export { slotOf };

/**
 * Companion functions of a GPU: the other endpoints of the same physical card that must travel with
 * it (HDMI audio, Turing's USB and UCSI). A companion is either the target of one of the GPU's
 * `consumer:pci:<bdf>` device links, or a card function by the vendor rule (same slot **and** the
 * GPU's vendor, src/host/vendor.ts) in the GPU's IOMMU group (both undefined counts when the IOMMU is
 * off). Everything else — other slots, and an APU slot's host functions under the CPU vendor's id
 * (security processor, USB, audio) — is never a companion: in the GPU's group it is a foreign device,
 * which the verdict must name. Bridges, SR-IOV VFs and other GPUs are excluded: bridges stay on
 * pcieport, a VF is handed off on its own, and so is every GPU.
 */
export function findCompanions(
  gpu: PciFunction,
  functions: readonly PciFunction[],
  consumers: readonly PciAddress[],
  isGpu: (fn: PciFunction) => boolean,
): PciAddress[] {
  const linked = new Set<string>(consumers);
  const out: PciAddress[] = [];
  for (const fn of functions) {
    if (fn.address === gpu.address) continue;
    if (fn.isBridge || fn.physfn !== undefined || isGpu(fn)) continue;
    if (linked.has(fn.address) || (isCardFunction(gpu, fn) && fn.iommuGroup === gpu.iommuGroup)) out.push(fn.address);
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
