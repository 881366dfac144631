import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostReadError } from '../../../src/core/errors.js';
import { listBuiltinProfiles, loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { NodeHost } from '../../../src/sysfs/node-host.js';
import type { HostReader } from '../../../src/sysfs/port.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';

/**
 * The host contract: the simulated kernel and NodeHost over a materialised copy of the same state
 * answer every read identically (text incl. trailing newline, raw link text, sorted lists, existence).
 */

const ROOTS = [
  'sys/bus/pci/devices',
  'sys/bus/pci/drivers',
  'sys/kernel/iommu_groups',
  'sys/bus/platform/devices',
  'sys/bus/platform/drivers',
  'sys/class/vtconsole',
  'dev',
  'proc',
  'lib',
];

type Observation = [kind: string, path: string, value: unknown];

/** Walks the roots through the port only; descends into links directly under a root (devices, consoles). */
async function observe(host: HostReader): Promise<Observation[]> {
  const out: Observation[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    const names = await host.list(dir);
    out.push(['list', dir, names]);
    for (const name of names) {
      const p = `${dir}/${name}`;
      const link = await host.readLink(p);
      if (link !== undefined) {
        const exists = await host.exists(p);
        out.push(['link', p, { link, exists, group: /iommu_groups\/([0-9]+)$/.exec(link)?.[1], base: link.slice(link.lastIndexOf('/') + 1) }]);
        if (depth === 0 && exists) await walk(p, depth + 1);
        continue;
      }
      try {
        out.push(['text', p, await host.readText(p)]);
      } catch (err) {
        if (!(err instanceof HostReadError) || err.errno !== 'EISDIR') throw err;
        await walk(p, depth + 1);
      }
    }
  };
  for (const r of ROOTS) await walk(r, 0);
  out.push(['text', 'proc/sys/kernel/osrelease', await host.readText('proc/sys/kernel/osrelease')]);
  return out;
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'vfio-handoff-contract-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const names = await listBuiltinProfiles();

describe('host contract: SimulatedKernel vs NodeHost on a materialised tree', () => {
  it.each(names)('%s: every read agrees', async (name) => {
    const profile = await loadBuiltinProfile(name);
    const dir = join(root, name);
    await materialiseProfile(profile, dir);
    const sim = await observe(new SimulatedKernel(profile));
    const tree = await observe(new NodeHost({ root: dir }));
    expect(tree).toEqual(sim);
    expect(sim.length).toBeGreaterThan(100); // the walk really saw the devices
  });

  it('agrees after driving writes into the simulated kernel (unbind, override, probe, efifb removal)', async () => {
    const sut = new SimulatedKernel(await loadBuiltinProfile('qemu-vga-hda'));
    const before = await observe(sut);
    await sut.loadModule('vfio-pci');
    await sut.writeText('sys/class/vtconsole/vtcon1/bind', '0');
    await sut.writeText('sys/bus/platform/drivers/efi-framebuffer/unbind', 'efi-framebuffer.0');
    for (const f of ['0000:00:02.0', '0000:00:02.1']) {
      await sut.writeText(`sys/bus/pci/devices/${f}/driver_override`, 'vfio-pci');
      await sut.writeText('sys/bus/pci/drivers_probe', f);
    }
    const dir = join(root, 'after-writes');
    await materialiseProfile(sut, dir);
    const sim = await observe(sut);
    const tree = await observe(new NodeHost({ root: dir }));
    expect(tree).toEqual(sim);
    expect(sim).not.toEqual(before);
    expect(sim).toContainEqual(['list', 'dev/vfio', ['2', 'vfio']]);
    expect(sim.some(([, p]) => p === 'sys/bus/platform/devices/efi-framebuffer.0')).toBe(false);
  });

  it('agrees after a partial handoff on an iommufd host (release of one L40S)', async () => {
    const sut = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-l40s-vfio'));
    await sut.writeText('sys/bus/pci/devices/0000:18:00.0/driver_override', '');
    await sut.writeText('sys/bus/pci/drivers/vfio-pci/unbind', '0000:18:00.0');
    await sut.loadModule('nvidia');
    await sut.writeText('sys/bus/pci/drivers_probe', '0000:18:00.0');
    const dir = join(root, 'after-release');
    await materialiseProfile(sut, dir);
    const sim = await observe(sut);
    expect(await observe(new NodeHost({ root: dir }))).toEqual(sim);
    expect(sim).toContainEqual(['link', 'sys/bus/pci/devices/0000:18:00.0/driver', expect.objectContaining({ base: 'nvidia' })]);
  });
});
