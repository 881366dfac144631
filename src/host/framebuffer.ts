import type { PciAddress } from '../core/pci-address.js';
import type { Bar, Framebuffer } from './model.js';
import type { IomemEntry } from './iomem.js';
import { isMemoryBar } from './resource.js';

export type FramebufferType = Framebuffer['type'];

const DEVICE_NAME = /^(efi-framebuffer|simple-framebuffer|vesa-framebuffer|vga-framebuffer|platform-framebuffer)\.(\d+)$/;

/** The sysfb platform device type of a `sys/bus/platform/devices` entry, or `undefined` when it is not one. */
export function framebufferTypeOf(deviceName: string): Exclude<FramebufferType, 'other'> | undefined {
  const m = DEVICE_NAME.exec(deviceName);
  return m ? (m[1] as Exclude<FramebufferType, 'other'>) : undefined;
}

/** `/proc/iomem` names that the firmware framebuffer drivers (or sysfb itself, `BOOTFB`) claim. */
const CLAIMS_BY_TYPE: Readonly<Record<FramebufferType, readonly string[]>> = {
  'efi-framebuffer': ['efifb', 'efidrm'],
  'simple-framebuffer': ['simpledrm', 'simplefb', 'simple-framebuffer'],
  'vesa-framebuffer': ['vesafb', 'vesadrm'],
  'vga-framebuffer': ['vga16fb', 'vgafb'],
  'platform-framebuffer': [],
  other: [],
};
const GENERIC_CLAIMS = ['BOOTFB'];

export interface FramebufferClaim {
  readonly claim: string;
  readonly range: { readonly start: bigint; readonly end: bigint };
}

/**
 * Finds the iomem claim for a framebuffer device: an entry named after its driver (`efifb`,
 * `simpledrm`, ...), sysfb's generic `BOOTFB`, or the device name itself. When claims nest
 * (`BOOTFB` > `simpledrm`, as on Talos), the innermost name is reported because it names the driver
 * that holds the memory; the range is the outermost one, the whole firmware framebuffer.
 * Returns `undefined` when nothing claims it (e.g. its driver was unbound, which drops the claim)
 * or when iomem shows only zeroed addresses (an unprivileged reader).
 */
export function findFramebufferClaim(
  device: string,
  type: FramebufferType,
  entries: readonly IomemEntry[],
): FramebufferClaim | undefined {
  const names = new Set([...CLAIMS_BY_TYPE[type], ...GENERIC_CLAIMS, device]);
  let outer: IomemEntry | undefined;
  let inner: IomemEntry | undefined;
  for (const e of entries) {
    if (!names.has(e.name) || (e.start === 0n && e.end === 0n)) continue;
    if (!outer) {
      outer = e;
      inner = e;
    } else if (e.depth > inner!.depth && e.start >= outer.start && e.end <= outer.end) {
      inner = e;
    } else if (e.depth <= outer.depth) {
      break; // a second, unrelated claim: keep the first
    }
  }
  if (!outer || !inner) return undefined;
  return { claim: inner.name, range: { start: outer.start, end: outer.end } };
}

export interface GpuBars {
  readonly address: PciAddress;
  readonly bars: readonly Bar[];
}

/**
 * The GPU memory BAR a framebuffer range lies in. Containment wins; a partial overlap counts only
 * when no BAR contains the range (a firmware-reported size can run past the BAR end) — either way
 * binding vfio-pci to that GPU conflicts with the framebuffer.
 */
export function framebufferOwner(
  range: { readonly start: bigint; readonly end: bigint },
  gpus: readonly GpuBars[],
): { address: PciAddress; bar: number } | undefined {
  let overlap: { address: PciAddress; bar: number } | undefined;
  for (const gpu of gpus) {
    for (const bar of gpu.bars) {
      if (!isMemoryBar(bar)) continue;
      if (range.start >= bar.start && range.end <= bar.end) return { address: gpu.address, bar: bar.index };
      if (!overlap && range.start <= bar.end && range.end >= bar.start) overlap = { address: gpu.address, bar: bar.index };
    }
  }
  return overlap;
}
