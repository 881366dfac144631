import { describe, expect, it } from 'vitest';
import { HostWriteError, InvalidArgumentError, TimeoutError } from '../core/errors.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import type { HostProfile } from '../profiles/profile.js';
import { SimulatedKernel } from './simulated-kernel.js';

const dev = (a: string): string => `sys/bus/pci/devices/${a}`;
const drv = (d: string, f: string): string => `sys/bus/pci/drivers/${d}/${f}`;

async function kernel(name: string): Promise<SimulatedKernel> {
  return new SimulatedKernel(await loadBuiltinProfile(name));
}

async function driverOf(k: SimulatedKernel, a: string): Promise<string | undefined> {
  const l = await k.readLink(`${dev(a)}/driver`);
  return l?.slice(l.lastIndexOf('/') + 1);
}

async function errnoOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HostWriteError);
  return (err as HostWriteError).errno;
}

/** Moves every function of the QEMU GPU group to vfio-pci the way the engine will. */
async function handOff(k: SimulatedKernel, fns: string[]): Promise<void> {
  await k.loadModule('vfio-pci');
  for (const f of fns) {
    const cur = await driverOf(k, f);
    if (cur) await k.writeText(drv(cur, 'unbind'), f);
    await k.writeText(`${dev(f)}/driver_override`, 'vfio-pci');
    await k.writeText('sys/bus/pci/drivers_probe', f);
  }
}

describe(SimulatedKernel.name, () => {
  describe('reads', () => {
    it('prints attributes the way pci-sysfs does', async () => {
      const sut = await kernel('workstation-efifb');
      expect(await sut.readText(`${dev('0000:01:00.0')}/vendor`)).toBe('0x10de\n');
      expect(await sut.readText(`${dev('0000:01:00.0')}/class`)).toBe('0x030000\n');
      expect(await sut.readText(`${dev('0000:01:00.0')}/numa_node`)).toBe('-1\n');
      expect(await sut.readText(`${dev('0000:01:00.0')}/boot_vga`)).toBe('1\n');
      expect(await sut.readText(`${dev('0000:01:00.0')}/driver_override`)).toBe('(null)\n');
      expect(await sut.readText(`${dev('0000:01:00.0')}/reset_method`)).toBe('flr bus\n');
      expect(await sut.readLink(`${dev('0000:01:00.0')}/iommu_group`)).toBe('../../../../kernel/iommu_groups/1');
      expect(await sut.readLink(`${dev('0000:01:00.1')}/driver`)).toBe('../../../../bus/pci/drivers/snd_hda_intel');
      expect(await sut.readLink(dev('0000:01:00.0'))).toBe('../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0');
      expect(await sut.list('sys/kernel/iommu_groups/1/devices')).toEqual(['0000:00:01.0', '0000:01:00.0', '0000:01:00.1']);
    });

    it('renders the resource file as 7 lines of start, end and flags', async () => {
      const sut = await kernel('workstation-efifb');
      const lines = (await sut.readText(`${dev('0000:01:00.0')}/resource`))!.split('\n');
      expect(lines).toHaveLength(8); // 7 lines + the trailing newline
      expect(lines[1]).toBe('0x00000000e0000000 0x00000000efffffff 0x000000000014220c');
      expect(lines[2]).toBe('0x0000000000000000 0x0000000000000000 0x0000000000000000');
    });

    it('has boot_vga only on VGA-class devices', async () => {
      const sut = await kernel('server-aspeed-4xh100');
      expect(await sut.readText(`${dev('0000:02:00.0')}/boot_vga`)).toBe('1\n');
      expect(await sut.exists(`${dev('0000:18:00.0')}/boot_vga`)).toBe(false);
    });

    it('nests the framebuffer claim inside the BAR in /proc/iomem', async () => {
      const sut = await kernel('qemu-vga-hda');
      expect(await sut.readText('proc/iomem')).toContain('  c0000000-c0ffffff : 0000:00:02.0\n    c0000000-c03e7fff : efifb\n');
    });

    it('shows no iommu_group links and no groups when the IOMMU is off', async () => {
      const sut = await kernel('iommu-off');
      expect(await sut.list('sys/kernel/iommu_groups')).toEqual([]);
      expect(await sut.readLink(`${dev('0000:01:00.0')}/iommu_group`)).toBeUndefined();
    });

    it('lists an absent directory as empty and returns undefined for absent files', async () => {
      const sut = await kernel('qemu-vga-hda');
      expect(await sut.list('dev/vfio')).toEqual([]);
      expect(await sut.readText(`${dev('0000:00:02.0')}/nope`)).toBeUndefined();
      expect(await sut.readLink(`${dev('0000:00:02.0')}/class`)).toBeUndefined();
    });

    it('refuses path tricks before reading', async () => {
      const sut = await kernel('qemu-vga-hda');
      await expect(sut.readText('sys/../etc/passwd')).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(sut.readText('/proc/iomem')).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(sut.writeText('sys/bus/pci/drivers_probe\0x', '1')).rejects.toBeInstanceOf(InvalidArgumentError);
    });

    it('counts reads', async () => {
      const sut = await kernel('qemu-vga-hda');
      await sut.readText('proc/iomem');
      await sut.list('sys/bus/pci/devices');
      expect(sut.stats().reads).toBe(2);
    });
  });

  describe('driver core', () => {
    it('unbind drops the driver link; unbinding from the wrong driver is ENODEV', async () => {
      const sut = await kernel('workstation-efifb');
      expect(await errnoOf(sut.writeText(drv('pcieport', 'unbind'), '0000:01:00.1'))).toBe('ENODEV');
      await sut.writeText(drv('snd_hda_intel', 'unbind'), '0000:01:00.1');
      expect(await driverOf(sut, '0000:01:00.1')).toBeUndefined();
      expect(await sut.list('sys/bus/pci/drivers/snd_hda_intel')).not.toContain('0000:01:00.1');
    });

    it('stores driver_override, clears it on an empty write and reads (null) when unset', async () => {
      const sut = await kernel('workstation-efifb');
      const p = `${dev('0000:01:00.1')}/driver_override`;
      await sut.writeText(p, 'vfio-pci\n');
      expect(await sut.readText(p)).toBe('vfio-pci\n');
      await sut.writeText(p, '\n');
      expect(await sut.readText(p)).toBe('(null)\n');
      await sut.writeText(p, 'vfio-pci');
      await sut.writeText(p, '');
      expect(await sut.readText(p)).toBe('(null)\n');
    });

    it('drivers_probe binds the override driver only when it is loaded, without an error otherwise', async () => {
      const sut = await kernel('qemu-vga-hda');
      await sut.writeText(`${dev('0000:00:02.1')}/driver_override`, 'vfio-pci');
      await sut.writeText('sys/bus/pci/drivers_probe', '0000:00:02.1');
      expect(await driverOf(sut, '0000:00:02.1')).toBeUndefined();
      await sut.loadModule('vfio_pci'); // registering the driver probes matching devices
      expect(await driverOf(sut, '0000:00:02.1')).toBe('vfio-pci');
    });

    it('drivers_probe without an override binds the native driver if loaded', async () => {
      const sut = await kernel('qemu-vga-hda');
      await sut.writeText('sys/bus/pci/drivers_probe', '0000:00:02.1');
      expect(await driverOf(sut, '0000:00:02.1')).toBeUndefined(); // snd_hda_intel not loaded
      await sut.loadModule('snd-hda-intel');
      expect(await driverOf(sut, '0000:00:02.1')).toBe('snd_hda_intel');
      expect(await errnoOf(sut.writeText('sys/bus/pci/drivers_probe', '0000:00:09.0'))).toBe('ENODEV');
    });

    it('bind: EBUSY when bound, ENODEV without a match or when the override names another driver', async () => {
      const sut = await kernel('workstation-efifb');
      await sut.loadModule('vfio-pci');
      expect(await errnoOf(sut.writeText(drv('snd_hda_intel', 'bind'), '0000:01:00.1'))).toBe('EBUSY');
      expect(await errnoOf(sut.writeText(drv('vfio-pci', 'bind'), '0000:01:00.0'))).toBe('ENODEV'); // vfio-pci needs the override
      await sut.writeText(drv('snd_hda_intel', 'unbind'), '0000:01:00.1');
      await sut.writeText(`${dev('0000:01:00.1')}/driver_override`, 'vfio-pci');
      expect(await errnoOf(sut.writeText(drv('snd_hda_intel', 'bind'), '0000:01:00.1'))).toBe('ENODEV');
      await sut.writeText(drv('vfio-pci', 'bind'), '0000:01:00.1');
      expect(await driverOf(sut, '0000:01:00.1')).toBe('vfio-pci');
    });

    it('new_id binds every matching unbound device', async () => {
      const sut = await kernel('qemu-vga-hda');
      await sut.loadModule('vfio-pci');
      await sut.writeText(drv('vfio-pci', 'new_id'), '1234 1111');
      expect(await driverOf(sut, '0000:00:02.0')).toBe('vfio-pci');
      expect(await driverOf(sut, '0000:00:03.0')).toBe('vfio-pci');
      expect(await driverOf(sut, '0000:00:02.1')).toBeUndefined();
      expect(sut.state().dynamicIds['vfio-pci']).toEqual(['1234:1111']);
      expect(await errnoOf(sut.writeText(drv('vfio-pci', 'new_id'), 'zz'))).toBe('EINVAL');
    });

    it('vfio-pci refuses bridges (EINVAL) and PFs with VFs enabled (EBUSY)', async () => {
      const ws = await kernel('workstation-efifb');
      await ws.loadModule('vfio-pci');
      await ws.writeText(drv('pcieport', 'unbind'), '0000:00:01.0');
      await ws.writeText(`${dev('0000:00:01.0')}/driver_override`, 'vfio-pci');
      expect(await errnoOf(ws.writeText(drv('vfio-pci', 'bind'), '0000:00:01.0'))).toBe('EINVAL');
      await ws.writeText('sys/bus/pci/drivers_probe', '0000:00:01.0'); // probe failure is silent
      expect(await driverOf(ws, '0000:00:01.0')).toBeUndefined();

      const mi = await kernel('mi300x-sriov');
      await mi.writeText(drv('gim', 'unbind'), '0000:85:00.0');
      await mi.writeText(`${dev('0000:85:00.0')}/driver_override`, 'vfio-pci');
      expect(await errnoOf(mi.writeText(drv('vfio-pci', 'bind'), '0000:85:00.0'))).toBe('EBUSY');
      await mi.writeText(`${dev('0000:85:00.0')}/sriov_numvfs`, '0');
      expect(await mi.exists(dev('0000:85:02.0'))).toBe(false);
      await mi.writeText(drv('vfio-pci', 'bind'), '0000:85:00.0');
      expect(await driverOf(mi, '0000:85:00.0')).toBe('vfio-pci');
    });

    it('refuses writes to read-only attributes and missing paths', async () => {
      const sut = await kernel('qemu-vga-hda');
      expect(await errnoOf(sut.writeText(`${dev('0000:00:02.0')}/vendor`, '0x1'))).toBe('EACCES');
      expect(await errnoOf(sut.writeText(drv('vfio-pci', 'bind'), '0000:00:02.0'))).toBe('ENOENT'); // not loaded
    });

    it('loadModule of a module that is not available is ENOENT; of a loaded one a no-op', async () => {
      const sut = await kernel('qemu-vga-hda');
      expect(await errnoOf(sut.loadModule('nvidia'))).toBe('ENOENT');
      await sut.loadModule('vfio-pci');
      await sut.loadModule('vfio-pci');
      expect(await sut.exists('dev/vfio/vfio')).toBe(true);
      await expect(sut.loadModule('../evil')).rejects.toBeInstanceOf(InvalidArgumentError);
    });
  });

  describe('/dev/vfio', () => {
    it('has the group node as soon as one member is on vfio-pci, viable or not (as the real kernel does)', async () => {
      const sut = await kernel('workstation-efifb');
      await sut.loadModule('vfio-pci');
      expect(await sut.exists('dev/vfio/1')).toBe(false);
      await sut.writeText(`${dev('0000:01:00.0')}/driver_override`, 'vfio-pci');
      await sut.writeText('sys/bus/pci/drivers_probe', '0000:01:00.0');
      expect(await driverOf(sut, '0000:01:00.0')).toBe('vfio-pci');
      // Audio still on snd_hda_intel: not viable, yet 6.1 and 6.12 both showed /dev/vfio/<g> here.
      expect(await sut.exists('dev/vfio/1')).toBe(true);
      expect(sut.state().vfioGroups).toEqual([1]);
      await sut.writeText(drv('vfio-pci', 'unbind'), '0000:01:00.0');
      expect(await sut.exists('dev/vfio/1')).toBe(false); // no member on vfio-pci: the node goes
    });

    it('binds the dummy console exactly while no fbcon console is bound', async () => {
      const sut = await kernel('workstation-efifb');
      const bound = async (vt: string) => (await sut.readText(`sys/class/vtconsole/${vt}/bind`))?.trim();
      expect([await bound('vtcon0'), await bound('vtcon1')]).toEqual(['0', '1']);
      await sut.writeText('sys/class/vtconsole/vtcon1/bind', '0');
      expect([await bound('vtcon0'), await bound('vtcon1')]).toEqual(['1', '0']);
      await sut.writeText('sys/class/vtconsole/vtcon1/bind', '1');
      expect([await bound('vtcon0'), await bound('vtcon1')]).toEqual(['0', '1']);
    });

    it('adds vfio-dev/vfioN and /dev/vfio/devices/vfioN with iommufd', async () => {
      const sut = await kernel('server-aspeed-l40s-vfio');
      expect(await sut.exists('dev/iommu')).toBe(true);
      const [name] = await sut.list(`${dev('0000:18:00.0')}/vfio-dev`);
      expect(name).toMatch(/^vfio[0-9]+$/);
      expect(await sut.exists(`dev/vfio/devices/${name!}`)).toBe(true);
      expect(await sut.list('dev/vfio')).toEqual(expect.arrayContaining(['31', '45', '121', '135', 'vfio', 'devices']));
    });
  });

  describe('firmware framebuffer and fbcon', () => {
    it('binding vfio-pci to the boot VGA removes efifb for good (kernel-e2e.md scenario C)', async () => {
      const sut = await kernel('qemu-vga-hda');
      await handOff(sut, ['0000:00:02.0', '0000:00:02.1']);
      expect(await sut.exists('dev/vfio/2')).toBe(true);
      expect(await sut.exists('sys/bus/platform/devices/efi-framebuffer.0')).toBe(false);
      expect(await sut.readText('proc/iomem')).not.toContain('efifb');
      expect(await sut.list('sys/class/vtconsole')).toEqual(['vtcon0']);
      // give back: nothing can rebind efifb
      await sut.writeText(`${dev('0000:00:02.0')}/driver_override`, '');
      await sut.writeText(drv('vfio-pci', 'unbind'), '0000:00:02.0');
      expect(await errnoOf(sut.writeText('sys/bus/platform/drivers/efi-framebuffer/bind', 'efi-framebuffer.0'))).toBe('ENODEV');
      // a native display driver brings fbcon back (scenario A, modprobe bochs)
      await sut.loadModule('bochs');
      expect(await driverOf(sut, '0000:00:02.0')).toBe('bochs-drm');
      expect(await sut.readText('sys/class/vtconsole/vtcon1/bind')).toBe('1\n');
    });

    it('unbinding efifb keeps the platform device, drops its claim and fbcon, and it can be rebound (scenario R)', async () => {
      const sut = await kernel('qemu-vga-hda');
      await sut.writeText('sys/class/vtconsole/vtcon1/bind', '0');
      expect(await sut.readText('sys/class/vtconsole/vtcon1/bind')).toBe('0\n');
      await sut.writeText('sys/bus/platform/drivers/efi-framebuffer/unbind', 'efi-framebuffer.0');
      expect(await sut.exists('sys/bus/platform/devices/efi-framebuffer.0')).toBe(true);
      expect(await sut.readText('proc/iomem')).not.toContain('efifb');
      expect(await sut.exists('sys/class/vtconsole/vtcon1')).toBe(false);
      await sut.writeText('sys/bus/platform/drivers/efi-framebuffer/bind', 'efi-framebuffer.0');
      expect(await sut.readText('proc/iomem')).toContain('efifb');
      expect(await sut.readText('sys/class/vtconsole/vtcon1/bind')).toBe('1\n');
      expect(await errnoOf(sut.writeText('sys/bus/platform/drivers/efi-framebuffer/bind', 'efi-framebuffer.0'))).toBe('EBUSY');
      expect(await errnoOf(sut.writeText('sys/bus/platform/drivers/simple-framebuffer/unbind', 'efi-framebuffer.0'))).toBe('ENODEV');
    });

    it('even after efifb was unbound, the vfio-pci bind still unregisters its platform device (scenario A)', async () => {
      const sut = await kernel('qemu-vga-hda');
      await sut.writeText('sys/bus/platform/drivers/efi-framebuffer/unbind', 'efi-framebuffer.0');
      await handOff(sut, ['0000:00:02.0', '0000:00:02.1']);
      expect(sut.state().removedFramebuffers).toEqual(['efi-framebuffer.0']);
    });

    it.each([
      // [profile, kernel, does binding the NON-boot VGA remove the boot GPU's efifb?]
      ['workstation-efifb-6.1', true], // 6.1: sysfb_disable() unconditionally (kernel-e2e.md)
    ])('%s: binding a secondary VGA GPU to vfio-pci removes the boot efifb: %s', async (name, removed) => {
      const sut = await kernel(name);
      await handOff(sut, ['0000:03:00.0', '0000:03:00.1']);
      expect(await sut.exists('sys/bus/platform/devices/efi-framebuffer.0')).toBe(!removed);
    });

    it('>= 6.5 keeps the boot efifb when a non-overlapping, non-boot VGA GPU is bound', async () => {
      const base = await loadBuiltinProfile('workstation-efifb-6.1');
      const sut = new SimulatedKernel({ ...base, kernelRelease: '6.12.41+deb13-amd64' });
      await handOff(sut, ['0000:03:00.0', '0000:03:00.1']);
      expect(await sut.exists('sys/bus/platform/devices/efi-framebuffer.0')).toBe(true);
      await handOff(sut, ['0000:01:00.0', '0000:01:00.1']); // the boot GPU itself: gone
      expect(await sut.exists('sys/bus/platform/devices/efi-framebuffer.0')).toBe(false);
    });

    it('< 6.0: vfio-pci removes nothing', async () => {
      const base = await loadBuiltinProfile('qemu-vga-hda');
      const sut = new SimulatedKernel({ ...base, kernelRelease: '5.15.0-119-generic' });
      await handOff(sut, ['0000:00:02.0', '0000:00:02.1']);
      expect(await sut.exists('sys/bus/platform/devices/efi-framebuffer.0')).toBe(true);
    });

    it('a 3D-controller GPU bound to vfio-pci never touches framebuffers', async () => {
      const p: HostProfile = {
        ...(await loadBuiltinProfile('server-aspeed-4xh100')),
        kernelRelease: '6.1.0-56-amd64',
        framebuffers: [{ device: 'efi-framebuffer.0', driver: 'efi-framebuffer', claim: 'efifb', start: '0x94000000', size: '0x300000' }],
      };
      const sut = new SimulatedKernel(p);
      await sut.writeText(drv('nvidia', 'unbind'), '0000:18:00.0');
      await handOff(sut, ['0000:18:00.0']);
      expect(await sut.exists('sys/bus/platform/devices/efi-framebuffer.0')).toBe(true);
    });

    it('simpledrm lives on simple-framebuffer.0; unbinding it through efi-framebuffer is ENODEV', async () => {
      const sut = await kernel('workstation-simpledrm');
      expect(await errnoOf(sut.writeText('sys/bus/platform/drivers/efi-framebuffer/unbind', 'simple-framebuffer.0'))).toBe('ENODEV');
      await sut.writeText('sys/bus/platform/drivers/simple-framebuffer/unbind', 'simple-framebuffer.0');
      expect(await sut.readText('proc/iomem')).not.toContain('simpledrm');
    });
  });

  describe('test controls', () => {
    it('injectFault fails matching writes with the errno, `times` times, and logs them', async () => {
      const sut = await kernel('workstation-efifb');
      sut.injectFault({ path: /\/unbind$/, errno: 'EBUSY', times: 1 });
      expect(await errnoOf(sut.writeText(drv('snd_hda_intel', 'unbind'), '0000:01:00.1'))).toBe('EBUSY');
      expect(await driverOf(sut, '0000:01:00.1')).toBe('snd_hda_intel'); // no effect
      await sut.writeText(drv('snd_hda_intel', 'unbind'), '0000:01:00.1');
      expect(sut.writeLog).toEqual([
        { kind: 'write', path: drv('snd_hda_intel', 'unbind'), value: '0000:01:00.1', outcome: 'error', errno: 'EBUSY' },
        { kind: 'write', path: drv('snd_hda_intel', 'unbind'), value: '0000:01:00.1', outcome: 'ok' },
      ]);
    });

    it.each(['EBUSY', 'ENODEV', 'EACCES', 'EIO'] as const)('injectFault with %s', async (errno) => {
      const sut = await kernel('qemu-vga-hda');
      sut.injectFault({ path: 'sys/bus/pci/drivers_probe', errno });
      expect(await errnoOf(sut.writeText('sys/bus/pci/drivers_probe', '0000:00:02.0'))).toBe(errno);
      expect(await errnoOf(sut.writeText('sys/bus/pci/drivers_probe', '0000:00:02.0'))).toBe(errno); // no `times`: persistent
      sut.clearFaults();
      await sut.writeText('sys/bus/pci/drivers_probe', '0000:00:02.0');
    });

    it('injectHang: the write ignores its abort signal (the kernel keeps the thread) until releaseHangs(), then applies', async () => {
      const sut = await kernel('workstation-efifb');
      sut.injectHang({ path: drv('snd_hda_intel', 'unbind'), times: 1 });
      const ac = new AbortController();
      let settled = false;
      const p = sut.writeText(drv('snd_hda_intel', 'unbind'), '0000:01:00.1', { signal: ac.signal }).finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 20));
      ac.abort(new Error('step timeout'));
      await new Promise((r) => setTimeout(r, 20));
      expect(settled).toBe(false);
      expect(sut.hungWrites).toBe(1);
      expect(sut.writeLog.at(-1)?.outcome).toBe('pending');
      expect(await driverOf(sut, '0000:01:00.1')).toBe('snd_hda_intel');
      sut.releaseHangs(); // the driver's remove() finally returns
      await p;
      expect(sut.writeLog.at(-1)?.outcome).toBe('ok');
      expect(await driverOf(sut, '0000:01:00.1')).toBeUndefined();
    });

    it('rejects a write whose signal is already aborted without applying it', async () => {
      const sut = await kernel('workstation-efifb');
      await expect(sut.writeText(drv('snd_hda_intel', 'unbind'), '0000:01:00.1', { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(TimeoutError);
      expect(await driverOf(sut, '0000:01:00.1')).toBe('snd_hda_intel');
    });

    it('hot-remove and hot-add', async () => {
      const sut = await kernel('server-aspeed-4xh100');
      sut.removeDevice('0000:17:01.0'); // the root port and the GPU below it
      expect(await sut.exists(dev('0000:18:00.0'))).toBe(false);
      expect(await sut.list('sys/kernel/iommu_groups')).not.toContain('31');
      sut.addDevice({ address: '0000:18:00.0', class: '0x030200', vendor: '10de', device: '2331', nativeDriver: 'nvidia', iommuGroup: 31 });
      expect(await driverOf(sut, '0000:18:00.0')).toBe('nvidia'); // probed like a new device
      expect(() => sut.addDevice({ address: '0000:18:00.0', class: '0x030200', vendor: '10de', device: '2331' })).toThrow(InvalidArgumentError);
    });

    it('state() is a deep copy', async () => {
      const sut = await kernel('qemu-vga-hda');
      const s = sut.state();
      (s.devices[0] as { driver: string | undefined }).driver = 'mutated';
      expect(sut.state().devices[0]!.driver).not.toBe('mutated');
      expect(s.kernelRelease).toBe('6.1.0-56-amd64');
    });
  });
});
