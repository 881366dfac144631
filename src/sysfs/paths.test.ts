import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../core/errors.js';
import type { PciAddress } from '../core/pci-address.js';
import * as P from './paths.js';

const addr = '0000:01:00.0' as PciAddress;

/** Every builder that takes a free-form name, applied to `name`. */
const nameBuilders: [string, (name: string) => string][] = [
  ['pciDriver', (n) => P.pciDriver(n)],
  ['pciDriverFile', (n) => P.pciDriverFile(n, 'unbind')],
  ['pciDeviceEntry', (n) => P.pciDeviceEntry(addr, n)],
  ['platformDevice', (n) => P.platformDevice(n)],
  ['platformDriver', (n) => P.platformDriver(n)],
  ['platformDriverFile', (n) => P.platformDriverFile(n, 'bind')],
  ['vtconsole', (n) => P.vtconsole(n)],
  ['vtconsoleFile', (n) => P.vtconsoleFile(n, 'bind')],
  ['modulesDep', (n) => P.modulesDep(n)],
  ['modulesBuiltin', (n) => P.modulesBuiltin(n)],
  ['sysModule', (n) => P.sysModule(n)],
];

/** The properties run hundreds of cases: on a busy machine they outlast vitest's 5 s default, so they say how long they may take. */
const PROPERTY_TIMEOUT_MS = 60_000;

describe('paths', () => {
  it('builds the sysfs, devfs and procfs paths', () => {
    expect(P.pciAttribute(addr, 'driver_override')).toBe('sys/bus/pci/devices/0000:01:00.0/driver_override');
    expect(P.pciAttribute(addr, 'vfio-dev')).toBe('sys/bus/pci/devices/0000:01:00.0/vfio-dev');
    expect(P.pciDriverFile('vfio-pci', 'new_id')).toBe('sys/bus/pci/drivers/vfio-pci/new_id');
    expect(P.PCI_DRIVERS_PROBE).toBe('sys/bus/pci/drivers_probe');
    expect(P.iommuGroupDevices(26)).toBe('sys/kernel/iommu_groups/26/devices');
    expect(P.platformDriverFile('efi-framebuffer', 'unbind')).toBe('sys/bus/platform/drivers/efi-framebuffer/unbind');
    expect(P.vtconsoleFile('vtcon1', 'bind')).toBe('sys/class/vtconsole/vtcon1/bind');
    expect(P.vfioGroupNode(2)).toBe('dev/vfio/2');
    expect(P.vfioDeviceNode('vfio0')).toBe('dev/vfio/devices/vfio0');
    expect(P.modulesDep('6.1.0-56-amd64')).toBe('lib/modules/6.1.0-56-amd64/modules.dep');
    expect(P.PCI_IDS_PATHS).toEqual(['usr/share/misc/pci.ids', 'usr/share/hwdata/pci.ids']);
  });

  it.each(['', '.', '..', 'a/b', 'a\0b', 'a b', 'a\nb', 'a\tb', '\u0007x', 'x\u007f'])('refuses the component %j', (bad) => {
    for (const [, build] of nameBuilders) expect(() => build(bad)).toThrow(InvalidArgumentError);
  });

  it('refuses non-canonical addresses, bad groups and unknown attributes', () => {
    expect(() => P.pciDevice('0000:01:00.0/../x' as PciAddress)).toThrow(InvalidArgumentError);
    expect(() => P.pciDevice('01:00.0' as PciAddress)).toThrow(InvalidArgumentError);
    expect(() => P.iommuGroup(-1)).toThrow(InvalidArgumentError);
    expect(() => P.vfioGroupNode(1.5)).toThrow(InvalidArgumentError);
    expect(() => P.pciAttribute(addr, 'remove' as P.PciDeviceAttribute)).toThrow(InvalidArgumentError);
    expect(() => P.vfioDeviceNode('../iommu')).toThrow(InvalidArgumentError);
  });

  it('property: a builder either throws InvalidArgumentError or yields a safe relative path', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: nameBuilders.length - 1 }), fc.string({ unit: 'binary', maxLength: 12 }), (i, name) => {
        let out: string;
        try {
          out = nameBuilders[i]![1](name);
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidArgumentError);
          return;
        }
        expect(out.includes('\0')).toBe(false);
        expect(out.split('/')).not.toContain('..');
        expect(out.startsWith('/')).toBe(false);
        expect(() => P.assertSafeRelativePath(out)).not.toThrow();
      }),
      { numRuns: 400 },
    );
  }, PROPERTY_TIMEOUT_MS);

  it('property: any component with a separator, NUL, whitespace or equal to "." / ".." throws', () => {
    const bad = fc.oneof(
      fc.constantFrom('', '.', '..'),
      fc.tuple(fc.string(), fc.constantFrom('/', '\0', ' ', '\n', '\t', '\r'), fc.string()).map(([a, c, b]) => a + c + b),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: nameBuilders.length - 1 }), bad, (i, name) => {
        expect(() => nameBuilders[i]![1](name)).toThrow(InvalidArgumentError);
      }),
    );
  }, PROPERTY_TIMEOUT_MS);

  it('assertSafeRelativePath refuses absolute paths, dot components and NUL', () => {
    for (const p of ['/sys', 'sys/../etc', 'sys/./bus', 'sys//bus', 'sys/\0', '', 'sys/bus/']) {
      expect(() => P.assertSafeRelativePath(p)).toThrow(InvalidArgumentError);
    }
    expect(P.assertSafeRelativePath('sys/bus/pci/devices/0000:01:00.0/driver')).toBe('sys/bus/pci/devices/0000:01:00.0/driver');
  });

  it('isModuleListed matches modules.dep entries with - and _ treated alike', () => {
    const dep = 'kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/vfio.ko\nkernel/sound/pci/hda/snd-hda-intel.ko.xz:\n';
    expect(P.isModuleListed(dep, 'vfio_pci')).toBe(true);
    expect(P.isModuleListed(dep, 'vfio-pci')).toBe(true);
    expect(P.isModuleListed(dep, 'snd_hda_intel')).toBe(true);
    expect(P.isModuleListed(dep, 'vfio')).toBe(false); // only a dependency, not listed as a module line
    expect(P.isModuleListed(dep, 'nvidia')).toBe(false);
  });
});
