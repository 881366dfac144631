import { describe, expect, it } from 'vitest';
import type { HostReader } from '../sysfs/port.js';
import { PciIds, parseVendorBlock } from './pci-ids.js';

const PCI_IDS = [
  '#',
  '#\tList of PCI ID\'s',
  '0f00  Some Vendor',
  '\t10de  Not NVIDIA (a device of another vendor with id 10de)',
  '1002  Advanced Micro Devices, Inc. [AMD/ATI]',
  '\t73bf  Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]',
  '10de  NVIDIA Corporation',
  '\t1eb8  TU104GL [Tesla T4]',
  '\t\t10de 12a2  T4 16GB',
  '# a comment inside the block',
  '\t2204  GA102 [GeForce RTX 3090]',
  '\t1aef  GA102 High Definition Audio Controller',
  '10df  Emulex Corporation',
  '\t2204  Not the RTX 3090',
  '',
  'C 03  Display controller',
  '\t00  VGA compatible controller',
  '',
].join('\n');

function readerWith(files: Record<string, string>): HostReader & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    readText: async (p) => {
      reads.push(p);
      return files[p];
    },
    readLink: async () => undefined,
    list: async () => [],
    exists: async (p) => p in files,
  };
}

describe(parseVendorBlock.name, () => {
  it('reads only the requested vendor, skipping subsystems and comments', () => {
    const devices = parseVendorBlock(PCI_IDS, '10de');
    expect([...devices]).toEqual([
      ['1eb8', 'TU104GL [Tesla T4]'],
      ['2204', 'GA102 [GeForce RTX 3090]'],
      ['1aef', 'GA102 High Definition Audio Controller'],
    ]);
  });

  it('does not mistake a device line for a vendor line', () => {
    expect(parseVendorBlock(PCI_IDS, '1002').get('73bf')).toBe('Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]');
    expect(parseVendorBlock(PCI_IDS, 'abcd').size).toBe(0);
  });

  it('handles a vendor on the first line and CRLF files', () => {
    expect(parseVendorBlock('10de  NVIDIA\r\n\t2204  GA102\r\n', '10de').get('2204')).toBe('GA102');
  });
});

describe(PciIds.name, () => {
  it('falls back to the hwdata path and reads the file once', async () => {
    const reader = readerWith({ 'usr/share/hwdata/pci.ids': PCI_IDS });
    const sut = new PciIds({ reader });
    expect(await sut.deviceName('10DE', '2204')).toBe('GA102 [GeForce RTX 3090]');
    expect(await sut.deviceName('1002', '73BF')).toBe('Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]');
    expect(await sut.deviceName('10de', '9999')).toBeUndefined();
    expect(reader.reads).toEqual(['usr/share/misc/pci.ids', 'usr/share/hwdata/pci.ids']);
  });

  it('answers undefined when no pci.ids exists', async () => {
    expect(await new PciIds({ reader: readerWith({}) }).deviceName('10de', '2204')).toBeUndefined();
  });
});
