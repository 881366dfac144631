/**
 * Group membership roles and the class names verdict messages use, with expectations from the PCI class
 * code table (PCI Code and ID Assignment spec: base class, subclass) written out here.
 */
import { describe, expect, it } from 'vitest';
import type { PciAddress } from '../core/pci-address.js';
import type { Gpu, HostSnapshot, PciFunction } from '../host/model.js';
import { cardMembers, describeClass, endpoints, formatClass, groupMembers } from './group.js';

function fn(address: string, classCode: number, extra: Partial<PciFunction> = {}): PciFunction {
  return {
    address: address as PciAddress,
    vendorId: '10de',
    deviceId: '2684',
    subsystemVendorId: undefined,
    subsystemDeviceId: undefined,
    classCode,
    driver: undefined,
    driverOverride: undefined,
    iommuGroup: 5,
    numaNode: undefined,
    bootVga: undefined,
    resetMethods: [],
    sriovTotalVfs: undefined,
    sriovNumVfs: undefined,
    physfn: undefined,
    isBridge: false,
    bars: [],
    vfioDevices: [],
    ...extra,
  };
}
const gpuOf = (f: PciFunction, companions: string[] = []): Gpu => ({ fn: f, kind: 'vga', companions: companions as PciAddress[], isBootGpu: false, framebuffers: [] });

describe('describeClass', () => {
  it('names each class verdicts mention, by base class and subclass (the programming interface does not matter)', () => {
    expect(
      [0x030000, 0x030200, 0x038000, 0x040300, 0x048000, 0x108000, 0x0c0330, 0x0c8000, 0x020000, 0x010802, 0x060400, 0x068000, 0x120000].map(describeClass),
    ).toEqual([
      'VGA controller',
      '3D controller',
      'display controller',
      'audio device',
      'multimedia controller',
      'encryption controller',
      'USB controller',
      'serial bus controller',
      'Ethernet controller',
      'NVMe controller',
      'PCI bridge',
      'bridge',
      'processing accelerator',
    ]);
  });
  it('an unknown class is given as its six hex digits', () => {
    expect(describeClass(0x0b4000)).toBe('class 0x0b4000');
    expect(describeClass(0x000001)).toBe('class 0x000001');
    expect(formatClass(0x040300)).toBe('0x040300');
    expect(formatClass(0x20000)).toBe('0x020000');
  });
});

describe('groupMembers', () => {
  const gpu = fn('0000:65:00.0', 0x030000);
  const audio = fn('0000:65:00.1', 0x040300, { driver: 'snd_hda_intel' });
  const bridge = fn('0000:64:00.0', 0x060400, { isBridge: true, driver: 'pcieport' });
  const nic = fn('0000:66:00.0', 0x020000, { driver: 'ixgbe' });
  const snapshot = (groups: HostSnapshot['groups'], fns: PciFunction[] = [gpu, audio, bridge, nic]) =>
    ({ functions: fns, groups, gpus: [gpuOf(gpu, [audio.address])] }) as unknown as HostSnapshot;

  it('gives each member its role: the GPU, its companion, the bridge, and anything else foreign; a listed member gone from the bus is left out', () => {
    const members = groupMembers(snapshot([{ id: 5, members: [bridge.address, gpu.address, audio.address, nic.address, '0000:67:00.0' as PciAddress] }]), gpuOf(gpu, [audio.address]));
    expect(members.map((m) => [m.fn.address, m.role])).toEqual([
      ['0000:64:00.0', 'bridge'],
      ['0000:65:00.0', 'gpu'],
      ['0000:65:00.1', 'companion'],
      ['0000:66:00.0', 'foreign'],
    ]);
    expect(endpoints(members).map((m) => m.fn.address)).toEqual(['0000:65:00.0', '0000:65:00.1', '0000:66:00.0']);
    expect(cardMembers(members).map((m) => m.fn.address)).toEqual(['0000:65:00.0', '0000:65:00.1']);
  });

  it('a GPU without an IOMMU group is its own only member; one whose group is not listed has just itself', () => {
    const loose = fn('0000:65:00.0', 0x030000, { iommuGroup: undefined });
    expect(groupMembers(snapshot([]), gpuOf(loose))).toEqual([{ fn: loose, role: 'gpu' }]);
    expect(groupMembers(snapshot([]), gpuOf(gpu, [audio.address]))).toEqual([{ fn: gpu, role: 'gpu' }]);
  });
});
