import type { Bar } from './model.js';

/** `IORESOURCE_IO` / `IORESOURCE_MEM` bits of the flags column (include/linux/ioport.h). */
export const IORESOURCE_IO = 0x100n;
export const IORESOURCE_MEM = 0x200n;

const LINE = /^\s*0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s*$/;

/**
 * Parses a PCI device's sysfs `resource` file: one line per resource, `0x%016llx 0x%016llx 0x%016llx`
 * (start, end inclusive, flags). Lines 0-5 are the BARs and line 6 the expansion ROM; later lines
 * (bridge windows, SR-IOV BARs) are ignored. Unused resources print as all zeros and are dropped.
 * Malformed lines are skipped rather than failing discovery: a BAR we cannot read only weakens the
 * framebuffer-ownership check, it must not hide the device.
 */
export function parseResourceFile(text: string): Bar[] {
  const bars: Bar[] = [];
  const lines = text.split('\n');
  for (let index = 0; index <= 6 && index < lines.length; index++) {
    const m = LINE.exec(lines[index]!);
    if (!m) continue;
    const start = BigInt(`0x${m[1]!}`);
    const end = BigInt(`0x${m[2]!}`);
    const flags = BigInt(`0x${m[3]!}`);
    if (start === 0n && end === 0n) continue;
    if (end < start) continue;
    bars.push({ index, start, end, flags });
  }
  return bars;
}

/** Memory BARs only: an I/O port range can numerically overlap a memory address without meaning anything. */
export function isMemoryBar(bar: Bar): boolean {
  return (bar.flags & IORESOURCE_IO) === 0n && bar.index <= 5;
}
