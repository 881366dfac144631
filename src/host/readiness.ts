import type { PciAddress } from '../core/pci-address.js';
import type { IomemEntry } from './iomem.js';
import { functionAt, groupById } from './lookup.js';
import type { BarClaim, HostSnapshot, PciFunction } from './model.js';
import { isMemoryBar } from './resource.js';
import { isUserDmaDriver, isVfioDriver } from './vendor.js';

/**
 * THE readiness rule: whether a VMM can take a device (GPU or SR-IOV VF) now. The verdict
 * (src/handoff/verdict.ts), the device plugin's device sets and Allocate revalidation
 * (src/devices, used by src/deviceplugin) and the agent's node plan all decide "ready" here, so they cannot disagree.
 *
 * Ready means, in this order of checks:
 * 1. the IOMMU is on and the device has a group (`NO_IOMMU_GROUP`);
 * 2. the device is bound to vfio-pci or a vfio-pci variant driver (`NOT_ON_VFIO_PCI`);
 * 3. the group is viable: every member discovery could read, and every non-bridge member unbound or
 *    on a driver_managed_dma driver (vfio-pci and variants, pci-stub) — the IOMMU core's rule
 *    (kernel.md §2) (`GROUP_NOT_VIABLE`);
 * 4. `/dev/vfio/<group>` exists (`NO_VFIO_GROUP_NODE`);
 * 5. nothing but VFIO claims memory inside its BARs in `/proc/iomem` — a firmware framebuffer left
 *    in a BAR (vfio-pci removes them only for VGA class) makes the VMM's BAR mmap fail with
 *    `BAR n: can't reserve` (`BAR_CLAIMED`). Without a readable iomem (unprivileged reader), a
 *    framebuffer platform device parented to the device with a driver bound counts as a claim.
 */
export type NotReadyReason = 'NOT_ON_VFIO_PCI' | 'NO_IOMMU_GROUP' | 'GROUP_NOT_VIABLE' | 'NO_VFIO_GROUP_NODE' | 'BAR_CLAIMED';

export interface NotReady {
  readonly reason: NotReadyReason;
  readonly message: string;
}

/** `undefined` when the device at `address` is ready for a VMM, else the first failing condition. */
export function notReady(snapshot: HostSnapshot, address: PciAddress): NotReady | undefined {
  const fn = functionAt(snapshot, address);
  if (!fn) return { reason: 'NOT_ON_VFIO_PCI', message: `${address} is not on this host` };
  const group = fn.iommuGroup;
  if (!snapshot.iommuEnabled || group === undefined) return { reason: 'NO_IOMMU_GROUP', message: `${address} has no IOMMU group` };
  if (!isVfioDriver(fn.driver)) return { reason: 'NOT_ON_VFIO_PCI', message: `${address} is on ${fn.driver ?? 'no driver'}, not vfio-pci` };
  const blocker = viabilityBlocker(snapshot, group);
  if (blocker) return { reason: 'GROUP_NOT_VIABLE', message: blocker };
  if (!snapshot.vfioGroupNodes.includes(group)) return { reason: 'NO_VFIO_GROUP_NODE', message: `/dev/vfio/${group} is missing` };
  const claims = barClaimsOf(snapshot, address);
  if (claims.length > 0) {
    return {
      reason: 'BAR_CLAIMED',
      message: `${claims.map((c) => `${c.name} claims BAR ${c.bar} of ${address}`).join('; ')}: a VMM cannot map it`,
    };
  }
  return undefined;
}

/** Why IOMMU group `group` is not viable for VFIO, or `undefined` when it is. */
export function viabilityBlocker(snapshot: HostSnapshot, group: number): string | undefined {
  for (const address of groupById(snapshot, group)?.members ?? []) {
    const m = functionAt(snapshot, address);
    // Listed in the group but unreadable (vanished mid-scan or garbage ids): we cannot vouch for it.
    if (!m) return `${address} in group ${group} could not be read`;
    if (!m.isBridge && m.driver !== undefined && !isUserDmaDriver(m.driver)) {
      return `${address} in group ${group} is on ${m.driver}`;
    }
  }
  return undefined;
}

/**
 * Claims inside the device's memory BARs: from `/proc/iomem` when it was readable, else inferred from
 * framebuffer platform devices parented to it with a driver bound.
 */
export function barClaimsOf(snapshot: HostSnapshot, address: PciAddress): readonly BarClaim[] {
  if (snapshot.iomemReadable !== false && snapshot.barClaims !== undefined) {
    return snapshot.barClaims.filter((c) => c.address === address);
  }
  const fallback: BarClaim[] = [];
  for (const fb of snapshot.framebuffers) {
    const here = fb.owner?.address === address || (fb.owner === undefined && fb.parent === address);
    if (!here || fb.driver === undefined) continue;
    const range = fb.range ?? { start: 0n, end: 0n };
    fallback.push({ address, bar: fb.owner?.bar ?? 0, name: fb.claim ?? fb.driver, ...range, firmwareFramebuffer: true });
  }
  return fallback;
}

/** `/proc/iomem` names of firmware framebuffers and sysfb (framebuffer.ts keeps the per-type lists). */
const FIRMWARE_FB_CLAIMS = new Set(['BOOTFB', 'efifb', 'efidrm', 'simpledrm', 'simplefb', 'simple-framebuffer', 'vesafb', 'vesadrm', 'vga16fb', 'vgafb']);

/** A claim VFIO makes itself when a VMM maps the BAR (`pci_request_selected_regions(..., "vfio")`). */
function isVfioClaim(name: string): boolean {
  return name === 'vfio' || isVfioDriver(name) || name.startsWith('vfio-pci');
}

/**
 * Finds the iomem entries nested inside the memory BARs of `fns` (the BAR's own entry is named by the
 * device address). Entries named like a PCI device (a BAR of a device behind a bridge window) and
 * VFIO's own claims are not claims against the device.
 */
export function findBarClaims(entries: readonly IomemEntry[], fns: readonly Pick<PciFunction, 'address' | 'bars'>[]): BarClaim[] {
  const out: BarClaim[] = [];
  const byName = new Map(fns.map((f) => [f.address as string, f]));
  for (const e of entries) {
    if (e.depth === 0 || (e.start === 0n && e.end === 0n)) continue;
    if (isVfioClaim(e.name) || /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(e.name)) continue;
    const owner = [...e.ancestors].reverse().find((a) => byName.has(a));
    if (owner === undefined) continue;
    const fn = byName.get(owner)!;
    const bar = fn.bars.find((b) => isMemoryBar(b) && e.start >= b.start && e.end <= b.end);
    if (!bar) continue;
    out.push({ address: fn.address, bar: bar.index, name: e.name, start: e.start, end: e.end, firmwareFramebuffer: FIRMWARE_FB_CLAIMS.has(e.name) });
  }
  // A nested chain (BOOTFB > simpledrm) is one conflict: keep the outermost entry per range start.
  return out.filter((c, i) => !out.some((o, j) => j < i && o.address === c.address && o.start <= c.start && c.end <= o.end));
}
