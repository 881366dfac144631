import { describe, expect, it } from 'vitest';
import { parsePciAddress } from '../core/pci-address.js';
import { classOf, gpuKindOf, isBridgeClass, isVgaClass } from './classify.js';
import { findFramebufferClaim, framebufferOwner, framebufferTypeOf } from './framebuffer.js';
import { iomemHasAddresses, parseIomem } from './iomem.js';
import { kernelAtLeast, parseKernelRelease } from './kernel-version.js';
import { isMemoryBar, parseResourceFile } from './resource.js';
import { compareVtConsoleNames, vtConsoleKind } from './vtconsole.js';

describe(parseKernelRelease.name, () => {
  it.each([
    ['6.1.0-56-amd64', 6, 1],
    ['6.12.117+deb12-amd64', 6, 12],
    ['6.18.48-talos', 6, 18],
    ['5.15.0-105-generic', 5, 15],
    ['6.8.0\n', 6, 8],
    ['6.5', 6, 5],
  ])('%j → %d.%d', (raw, major, minor) => {
    const k = parseKernelRelease(raw);
    expect(k).toEqual({ release: raw.trim(), major, minor });
  });

  it.each([['garbage'], ['6'], ['6.x.1'], ['v6.1.0']])('keeps the release but no numbers for %j', (raw) => {
    expect(parseKernelRelease(raw)).toEqual({ release: raw, major: undefined, minor: undefined });
  });

  it('treats a missing or empty file as unknown', () => {
    expect(parseKernelRelease(undefined).release).toBeUndefined();
    expect(parseKernelRelease('  \n').release).toBeUndefined();
  });

  it('compares versions by major then minor', () => {
    expect(kernelAtLeast(parseKernelRelease('6.12.1'), 6, 5)).toBe(true);
    expect(kernelAtLeast(parseKernelRelease('6.1.0-56-amd64'), 6, 5)).toBe(false);
    expect(kernelAtLeast(parseKernelRelease('5.19.0'), 6, 0)).toBe(false);
    expect(kernelAtLeast(parseKernelRelease('7.0.0'), 6, 18)).toBe(true);
    expect(kernelAtLeast(parseKernelRelease('x'), 6, 0)).toBeUndefined();
  });
});

describe(parseResourceFile.name, () => {
  const resource = [
    '0x00000000fb000000 0x00000000fbffffff 0x0000000000040200',
    '0x0000006000000000 0x000000600fffffff 0x000000000014220c',
    '0x0000000000000000 0x0000000000000000 0x0000000000000000',
    '0x0000006010000000 0x0000006011ffffff 0x000000000014220c',
    '0x0000000000000000 0x0000000000000000 0x0000000000000000',
    '0x000000000000e000 0x000000000000e07f 0x0000000000040101',
    '0x00000000fc000000 0x00000000fc07ffff 0x0000000000046200',
    '0x0000000000000000 0x0000000000000000 0x0000000000000000',
    '0x0000006020000000 0x000000602fffffff 0x000000000014220c',
    '',
  ].join('\n');

  it('keeps the used BARs 0-5 and the ROM with their index, drops empty ones and later lines', () => {
    const bars = parseResourceFile(resource);
    expect(bars.map((b) => b.index)).toEqual([0, 1, 3, 5, 6]);
    expect(bars[1]).toEqual({ index: 1, start: 0x6000000000n, end: 0x600fffffffn, flags: 0x14220cn });
  });

  it('knows I/O BARs and the ROM are not memory BARs', () => {
    const bars = parseResourceFile(resource);
    expect(bars.filter(isMemoryBar).map((b) => b.index)).toEqual([0, 1, 3]);
  });

  it('skips malformed lines without shifting indices', () => {
    const bars = parseResourceFile('garbage\n  0x1000 0x1fff 0x200  \n0x3 0x1 0x200\n');
    expect(bars).toEqual([{ index: 1, start: 0x1000n, end: 0x1fffn, flags: 0x200n }]);
  });
});

describe(parseIomem.name, () => {
  const iomem = [
    '00000000-00000fff : Reserved',
    '00100000-bffdffff : System RAM',
    '  0a000000-0b000000 : Kernel code',
    'c0000000-febfffff : PCI Bus 0000:00',
    '  c0000000-c0ffffff : 0000:00:02.0',
    '    c0000000-c03e7fff : efifb',
    '  c1000000-c1ffffff : 0000:00:05.0',
    '2800000000-2fffffffff : 0000:c3:00.0',
    '\t2800000000-2fffffffff :  BOOTFB',
    '\t    2800000000-2fffffffff : simpledrm   ',
    'not a line at all',
    'fee00000-fee00fff : Local APIC',
  ].join('\n');

  it('parses ranges, names with spaces and colons, and nesting by indentation', () => {
    const e = parseIomem(iomem);
    expect(e).toHaveLength(11);
    expect(e[3]).toMatchObject({ start: 0xc0000000n, end: 0xfebfffffn, name: 'PCI Bus 0000:00', depth: 0 });
    expect(e[5]).toMatchObject({ name: 'efifb', depth: 2, ancestors: ['PCI Bus 0000:00', '0000:00:02.0'] });
    expect(e[6]).toMatchObject({ name: '0000:00:05.0', depth: 1 });
  });

  it('nests tab-indented claims and trims odd whitespace around names', () => {
    const e = parseIomem(iomem);
    expect(e[8]).toMatchObject({ name: 'BOOTFB', depth: 1, ancestors: ['0000:c3:00.0'] });
    expect(e[9]).toMatchObject({ name: 'simpledrm', depth: 2, end: 0x2fffffffffn });
    expect(e[10]).toMatchObject({ name: 'Local APIC', depth: 0 });
  });

  it('recognises the all-zero view an unprivileged reader gets', () => {
    expect(iomemHasAddresses(parseIomem(iomem))).toBe(true);
    expect(iomemHasAddresses(parseIomem('00000000-00000000 : System RAM\n  00000000-00000000 : efifb\n'))).toBe(false);
  });

  describe(findFramebufferClaim.name, () => {
    it('finds efifb inside the GPU BAR', () => {
      expect(findFramebufferClaim('efi-framebuffer.0', 'efi-framebuffer', parseIomem(iomem))).toEqual({
        claim: 'efifb',
        range: { start: 0xc0000000n, end: 0xc03e7fffn },
      });
    });

    it('reports the innermost driver claim of a BOOTFB > simpledrm nest', () => {
      const only = parseIomem(iomem).filter((e) => e.name !== 'efifb');
      expect(findFramebufferClaim('simple-framebuffer.0', 'simple-framebuffer', only)).toEqual({
        claim: 'simpledrm',
        range: { start: 0x2800000000n, end: 0x2fffffffffn },
      });
    });

    it('finds nothing when the driver is unbound (claim gone) or addresses are hidden', () => {
      expect(findFramebufferClaim('vesa-framebuffer.0', 'vesa-framebuffer', parseIomem('c0000000-c0ffffff : 0000:00:02.0\n'))).toBeUndefined();
      expect(findFramebufferClaim('efi-framebuffer.0', 'efi-framebuffer', parseIomem('00000000-00000000 : efifb\n'))).toBeUndefined();
    });
  });
});

describe(framebufferOwner.name, () => {
  const a = parsePciAddress('0000:01:00.0');
  const b = parsePciAddress('0000:02:00.0');
  const gpus = [
    { address: a, bars: [{ index: 0, start: 0xe000n, end: 0xe0ffn, flags: 0x101n }, { index: 1, start: 0xc0000000n, end: 0xcfffffffn, flags: 0x14220cn }] },
    { address: b, bars: [{ index: 0, start: 0xd0000000n, end: 0xd0ffffffn, flags: 0x40200n }] },
  ];

  it('names the GPU and BAR index that contain the range', () => {
    expect(framebufferOwner({ start: 0xc0000000n, end: 0xc03e7fffn }, gpus)).toEqual({ address: a, bar: 1 });
    expect(framebufferOwner({ start: 0xd0000000n, end: 0xd0000fffn }, gpus)).toEqual({ address: b, bar: 0 });
  });

  it('ignores I/O BARs that overlap numerically', () => {
    expect(framebufferOwner({ start: 0xe000n, end: 0xe0ffn }, gpus)).toBeUndefined();
  });

  it('falls back to an overlapping BAR, and to nothing outside every BAR', () => {
    expect(framebufferOwner({ start: 0xcff00000n, end: 0xd0000fffn }, gpus)).toEqual({ address: a, bar: 1 });
    expect(framebufferOwner({ start: 0x1000n, end: 0x1fffn }, gpus)).toBeUndefined();
  });
});

describe('classification', () => {
  it.each([
    [0x030000, '10de', 'vga'],
    [0x030000, '1a03', 'vga'],
    [0x030200, '10de', '3d'],
    [0x038000, '1002', 'display'],
    [0x120000, '1002', 'accelerator'],
    [0x120000, '8086', 'accelerator'],
    [0x120000, '15b3', undefined],
    [0x068000, '10de', undefined],
    [0x040300, '10de', undefined],
    [0x060400, '8086', undefined],
  ] as const)('class %s vendor %s → %s', (cls, vendor, kind) => {
    expect(gpuKindOf(cls, vendor)).toBe(kind);
  });

  it('treats host, PCI-PCI, CardBus and semi-transparent bridges as bridges, not NVSwitch', () => {
    expect([0x060000, 0x060400, 0x060401, 0x060700, 0x060940].map(isBridgeClass)).toEqual([true, true, true, true, true]);
    expect([0x068000, 0x060100, 0x030000].map(isBridgeClass)).toEqual([false, false, false]);
  });

  it('knows VGA class from the base and sub-class only', () => {
    expect(classOf(0x030001)).toBe(0x0300);
    expect(isVgaClass(0x030001)).toBe(true);
    expect(isVgaClass(0x030200)).toBe(false);
  });
});

describe('framebuffer and vtconsole names', () => {
  it.each([
    ['efi-framebuffer.0', 'efi-framebuffer'],
    ['simple-framebuffer.12', 'simple-framebuffer'],
    ['vesa-framebuffer.0', 'vesa-framebuffer'],
    ['vga-framebuffer.0', 'vga-framebuffer'],
    ['platform-framebuffer.0', 'platform-framebuffer'],
    ['efi-framebuffer', undefined],
    ['serial8250', undefined],
    ['efi-framebuffer.0.x', undefined],
  ])('%s → %s', (name, type) => {
    expect(framebufferTypeOf(name)).toBe(type);
  });

  it.each([
    ['(M) frame buffer device', 'fbcon'],
    ['(S) VGA+', 'vgacon'],
    ['(S) dummy device', 'dummy'],
    ['(M) something else', 'other'],
  ] as const)('%s is %s', (d, kind) => {
    expect(vtConsoleKind(d)).toBe(kind);
  });

  it('sorts vtcon names numerically', () => {
    expect(['vtcon10', 'vtcon2', 'vtcon0'].sort(compareVtConsoleNames)).toEqual(['vtcon0', 'vtcon2', 'vtcon10']);
  });
});
