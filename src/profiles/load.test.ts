import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, ProfileError } from '../core/errors.js';
import { listBuiltinProfiles, loadBuiltinProfile, parseProfile } from './load.js';

const MINIMAL = `
name: tiny
kernelRelease: 6.12.41
loadedDrivers: [nvidia]
devices:
  - { address: "0000:01:00.0", class: "0x030000", vendor: "10de", device: "2684", driver: nvidia, iommuGroup: 1 }
`;

function profileErrorOf(text: string): string {
  try {
    parseProfile(text, 't.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ProfileError);
    return (err as Error).message;
  }
  throw new Error('expected a ProfileError');
}

describe('profile loader', () => {
  it('lists and loads every built-in profile the brief asks for', async () => {
    const names = await listBuiltinProfiles();
    expect(names).toEqual(
      expect.arrayContaining([
        'server-aspeed-4xh100', 'server-aspeed-l40s-vfio', 'workstation-efifb', 'workstation-simpledrm', 'workstation-efifb-6.1',
        'turing-usb-ucsi', 'foreign-usb-in-group', 'iommu-off', 'arm64-domain-0004', 'numa-unknown', 'intel-arc-separate-groups',
        'mi300x-sriov', 'hgx-nvswitch', 'bench-16gpu', 'qemu-vga-hda', 'qemu-bochs-display',
      ]),
    );
    for (const n of names) {
      const p = await loadBuiltinProfile(n);
      expect(p.name).toBe(n);
      expect(p.description).toMatch(/profile|kernel-e2e|hosts\.md/);
    }
  });

  it('returns frozen profiles', async () => {
    const p = await loadBuiltinProfile('qemu-vga-hda');
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.devices[0])).toBe(true);
  });

  it('bench-16gpu has 16 GPUs, each with an audio function in its group', async () => {
    const p = await loadBuiltinProfile('bench-16gpu');
    const gpus = p.devices.filter((d) => d.vendor === '10de' && d.class === '0x030000');
    expect(gpus).toHaveLength(16);
    for (const g of gpus) expect(p.devices.filter((d) => d.iommuGroup === g.iommuGroup).map((d) => d.class)).toEqual(['0x030000', '0x040300']);
  });

  it('parses a minimal profile', () => {
    expect(parseProfile(MINIMAL).devices[0]!.address).toBe('0000:01:00.0');
  });

  it.each([
    ['a missing field', MINIMAL.replace('kernelRelease: 6.12.41\n', ''), /kernelRelease/],
    ['a bad class', MINIMAL.replace('"0x030000"', '"0x0300"'), /devices\[0\]\.class/],
    ['an unknown field', MINIMAL.replace('iommuGroup: 1', 'iommuGroup: 1, colour: red'), /devices\[0\]\.colour/],
    ['a driver that is not loaded', MINIMAL.replace('driver: nvidia', 'driver: amdgpu'), /devices\[0\]\.driver/],
    ['an unknown parent', MINIMAL.replace('iommuGroup: 1', 'iommuGroup: 1, parent: "0000:00:01.0"'), /devices\[0\]\.parent/],
    ['upper-case address', MINIMAL.replace('0000:01:00.0', '0000:0A:00.0'), /devices\[0\]\.address/],
    ['a path trick in an address', MINIMAL.replace('0000:01:00.0', '../../etc'), /devices\[0\]\.address/],
    ['a duplicate address', MINIMAL + '  - { address: "0000:01:00.0", class: "0x040300", vendor: "10de", device: "22ba" }\n', /duplicate/],
    ['broken YAML', 'name: [', /not valid YAML/],
  ])('rejects %s naming the field', (_what, text, msg) => {
    expect(profileErrorOf(text)).toMatch(msg);
  });

  it('rejects unknown and unsafe built-in names', async () => {
    await expect(loadBuiltinProfile('no-such-host')).rejects.toBeInstanceOf(ProfileError);
    await expect(loadBuiltinProfile('../package')).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
