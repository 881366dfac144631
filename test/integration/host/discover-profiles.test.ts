import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePciAddress } from '../../../src/core/pci-address.js';
import { gpuKindOf } from '../../../src/host/classify.js';
import { slotOf } from '../../../src/host/companions.js';
import { discoverHost } from '../../../src/host/discover.js';
import type { Gpu, HostSnapshot } from '../../../src/host/model.js';
import { listBuiltinProfiles, loadBuiltinProfile } from '../../../src/profiles/load.js';
import type { HostProfile } from '../../../src/profiles/profile.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { NodeHost } from '../../../src/sysfs/node-host.js';
import * as P from '../../../src/sysfs/paths.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';

/**
 * Discovery over every built-in host profile, through both host port implementations: the
 * simulated kernel and NodeHost reading a materialised directory tree. Both must produce the same
 * snapshot, and the snapshot must agree with the profile it came from.
 */

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'vfio-handoff-discover-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const names = await listBuiltinProfiles();

type Snapshots = { profile: HostProfile; sim: HostSnapshot; tree: HostSnapshot };
const cache = new Map<string, Promise<Snapshots>>();

/** Discovery is read-only, so each profile is materialised and discovered once and shared by the tests. */
function snapshots(name: string): Promise<Snapshots> {
  let p = cache.get(name);
  if (!p) {
    p = discoverBoth(name);
    cache.set(name, p);
  }
  return p;
}

async function discoverBoth(name: string): Promise<Snapshots> {
  const profile = await loadBuiltinProfile(name);
  const sim = await discoverHost(new SimulatedKernel(profile));
  const dir = join(root, name);
  await materialiseProfile(profile, dir);
  const tree = await discoverHost(new NodeHost({ root: dir }));
  return { profile, sim, tree };
}

const bySnapshot = (snap: HostSnapshot, addr: string): Gpu | undefined => snap.gpus.find((g) => g.fn.address === addr);

describe.each(names)('discovery of built-in profile %s', (name) => {
  it('gives the same snapshot through the simulated kernel and a materialised tree', async () => {
    const { sim, tree } = await snapshots(name);
    expect(tree).toEqual(sim);
  });

  it('agrees with the profile: every function, its ids, class, driver, group and NUMA node', async () => {
    const { profile, sim } = await snapshots(name);
    const iommu = profile.iommu !== false;
    expect(sim.functions.map((f) => f.address)).toEqual(profile.devices.map((d) => parsePciAddress(d.address)).sort());
    for (const d of profile.devices) {
      const f = sim.functions.find((x) => x.address === parsePciAddress(d.address))!;
      expect(f.vendorId).toBe(d.vendor.toLowerCase());
      expect(f.deviceId).toBe(d.device.toLowerCase());
      expect(f.classCode).toBe(parseInt(d.class, 16));
      expect(f.driver).toBe(d.driver);
      expect(f.iommuGroup).toBe(iommu ? d.iommuGroup : undefined);
    }
    for (const g of sim.gpus) {
      const d = profile.devices.find((x) => parsePciAddress(x.address) === g.fn.address)!;
      expect(g.fn.numaNode).toBe(d.numaNode === undefined || d.numaNode < 0 ? undefined : d.numaNode);
      expect(g.fn.bootVga).toBe(parseInt(d.class, 16) >> 8 === 0x0300 ? (d.bootVga ?? false) : undefined);
    }
    expect(sim.iommuEnabled).toBe(iommu && profile.devices.some((d) => d.iommuGroup !== undefined));
    expect(sim.kernel.release).toBe(profile.kernelRelease);
  });

  it('finds exactly the GPUs (SR-IOV VFs included, each with its physfn), sorts groups numerically, and keeps companions inside the slot', async () => {
    const { profile, sim } = await snapshots(name);
    for (const g of sim.gpus) expect(g.fn.physfn).toBe(profile.devices.find((d) => d.address === g.fn.address)!.physfn);
    const expected = profile.devices
      .filter((d) => gpuKindOf(parseInt(d.class, 16), d.vendor.toLowerCase()) !== undefined)
      .map((d) => parsePciAddress(d.address))
      .sort();
    expect(sim.gpus.map((g) => g.fn.address)).toEqual(expected);
    const ids = sim.groups.map((g) => g.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    for (const g of sim.gpus) for (const c of g.companions) expect(slotOf(c)).toBe(slotOf(g.fn.address));
  });
});

/** Profile-specific facts from hosts.md, checked when the profile is present. */
const specific: Record<string, (s: HostSnapshot, p: HostProfile) => void> = {
  'server-aspeed-4xh100': (s) => {
    const aspeed = s.gpus.filter((g) => g.fn.vendorId === '1a03');
    expect(aspeed.map((g) => g.isBootGpu)).toEqual([true]);
    const h100 = s.gpus.filter((g) => g.fn.vendorId === '10de');
    expect(h100.length).toBeGreaterThanOrEqual(2);
    for (const g of h100) expect(g).toMatchObject({ kind: '3d', isBootGpu: false, fn: { classCode: 0x030200, bootVga: undefined } });
  },
  'workstation-efifb': (s) => {
    expect(s.framebuffers).toHaveLength(1);
    const fb = s.framebuffers[0]!;
    expect(fb).toMatchObject({ device: 'efi-framebuffer.0', type: 'efi-framebuffer', driver: 'efi-framebuffer', claim: 'efifb' });
    expect(fb.owner).toEqual({ address: '0000:01:00.0', bar: 1 });
    expect(bySnapshot(s, '0000:01:00.0')).toMatchObject({ isBootGpu: true, framebuffers: ['efi-framebuffer.0'], companions: ['0000:01:00.1'] });
    expect(s.vtconsoles.some((v) => v.kind === 'fbcon' && v.bound)).toBe(true);
  },
  'workstation-simpledrm': (s) => {
    const fb = s.framebuffers.find((f) => f.type === 'simple-framebuffer');
    expect(fb?.owner).toBeDefined();
    expect(s.gpus.filter((g) => g.isBootGpu).map((g) => g.fn.address)).toEqual([fb!.owner!.address]);
  },
  'turing-usb-ucsi': (s) => {
    const turing = s.gpus.find((g) => g.fn.deviceId === '1e04');
    expect(turing?.companions).toHaveLength(3);
  },
  'foreign-usb-in-group': (s) => {
    const g = s.gpus.find((x) => x.fn.vendorId === '10de')!;
    expect(g.companions).toEqual([`${slotOf(g.fn.address)}.1`]);
    const group = s.groups.find((x) => x.id === g.fn.iommuGroup)!;
    const foreign = group.members.filter((m) => m !== g.fn.address && !g.companions.includes(m) && !s.functions.find((f) => f.address === m)?.isBridge);
    expect(foreign.length).toBeGreaterThan(0);
    for (const m of foreign) expect(slotOf(m)).not.toBe(slotOf(g.fn.address));
  },
  'iommu-off': (s) => {
    expect(s.iommuEnabled).toBe(false);
    expect(s.groups).toEqual([]);
  },
  'arm64-domain-0004': (s) => {
    expect(s.gpus.map((g) => [g.fn.address, g.fn.iommuGroup])).toContainEqual(['0004:01:00.0', 26]);
  },
  'numa-unknown': (s) => {
    expect(s.gpus.length).toBeGreaterThan(0);
    for (const g of s.gpus) expect(g.fn.numaNode).toBeUndefined();
  },
  'intel-arc-separate-groups': (s) => {
    const arc = s.gpus.filter((g) => g.fn.vendorId === '8086');
    expect(arc.length).toBeGreaterThan(0);
    for (const g of arc) expect(g.companions).toEqual([]);
  },
  'mi300x-sriov': (s) => {
    const mi = s.gpus.filter((g) => g.fn.classCode >> 8 === 0x1200);
    expect(mi.length).toBeGreaterThan(0);
    for (const g of mi) expect(g.kind).toBe('accelerator');
    expect(mi.some((g) => (g.fn.sriovNumVfs ?? 0) > 0)).toBe(true);
    expect(s.functions.some((f) => f.physfn !== undefined)).toBe(true);
  },
  'hgx-nvswitch': (s) => {
    expect(s.functions.some((f) => f.classCode >> 8 === 0x0680)).toBe(true);
    for (const g of s.gpus) expect(g.fn.classCode >> 8).not.toBe(0x0680);
  },
  'server-aspeed-l40s-vfio': (s) => {
    const l40s = s.gpus.filter((g) => g.fn.vendorId === '10de');
    expect(l40s.length).toBeGreaterThan(0);
    for (const g of l40s) {
      expect(g.fn.driver).toBe('vfio-pci');
      expect(g.fn.vfioDevices).toHaveLength(1);
      expect(s.vfioGroupNodes).toContain(g.fn.iommuGroup);
    }
    expect(s.iommufd).toBe(true);
    expect(s.vfioPci.loaded).toBe(true);
  },
  'workstation-efifb-6.1': (s) => {
    expect(s.kernel).toEqual({ release: '6.1.0-56-amd64', major: 6, minor: 1 });
    expect(s.gpus.filter((g) => g.isBootGpu)).toHaveLength(1);
    expect(s.gpus.filter((g) => !g.isBootGpu && g.fn.bootVga === false)).toHaveLength(1);
  },
  'bench-16gpu': (s) => {
    const a5000 = s.gpus.filter((g) => g.fn.deviceId === '2231');
    expect(a5000).toHaveLength(16);
    for (const g of a5000) expect(g).toMatchObject({ isBootGpu: false, companions: [`${slotOf(g.fn.address)}.1`] });
    expect(s.gpus.filter((g) => g.isBootGpu).map((g) => g.fn.vendorId)).toEqual(['1a03']);
  },
  'qemu-bochs-display': (s) => {
    // Class 0x0380 has no boot_vga: efifb inside BAR0 is what makes it the boot display.
    expect(bySnapshot(s, '0000:00:02.0')).toMatchObject({ kind: 'display', isBootGpu: true, framebuffers: ['efi-framebuffer.0'] });
    expect(s.framebuffers[0]).toMatchObject({ owner: { address: '0000:00:02.0', bar: 0 }, parent: undefined });
    expect(s.vfioPci).toEqual({ loaded: true, loadable: true });
    expect(s.vfioIommuType1).toEqual({ loaded: false, loadable: true });
  },
  'qemu-vga-hda': (s) => {
    expect(bySnapshot(s, '0000:00:02.0')).toMatchObject({ kind: 'vga', isBootGpu: true, companions: ['0000:00:02.1'] });
    expect(bySnapshot(s, '0000:00:03.0')).toMatchObject({ kind: 'display', isBootGpu: false });
    expect(s.framebuffers[0]?.owner).toEqual({ address: '0000:00:02.0', bar: 0 });
    expect(s.vfioPci).toEqual({ loaded: false, loadable: true });
  },
};

describe.each(Object.keys(specific).filter((n) => names.includes(n)))('profile facts: %s', (name) => {
  it('holds through both host ports', async () => {
    const { profile, sim, tree } = await snapshots(name);
    specific[name]!(sim, profile);
    specific[name]!(tree, profile);
  });
});

describe('discovery after the simulated kernel changed state', () => {
  it('sees the group on vfio-pci, the firmware framebuffer gone and the /dev/vfio node', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    const before = await discoverHost(kernel);
    const g = before.gpus.find((x) => x.isBootGpu)!;
    await kernel.loadModule('vfio-pci');
    for (const addr of [g.fn.address, ...g.companions]) {
      const f = before.functions.find((x) => x.address === addr)!;
      if (f.driver) await kernel.writeText(P.pciDriverFile(f.driver, 'unbind'), addr);
      await kernel.writeText(P.pciAttribute(addr, 'driver_override'), 'vfio-pci');
      await kernel.writeText(P.PCI_DRIVERS_PROBE, addr);
    }
    const after = await discoverHost(kernel);
    for (const addr of [g.fn.address, ...g.companions]) {
      expect(after.functions.find((x) => x.address === addr)).toMatchObject({ driver: 'vfio-pci', driverOverride: 'vfio-pci' });
    }
    expect(after.vfioPci.loaded).toBe(true);
    expect(after.vfioGroupNodes).toContain(g.fn.iommuGroup);
    expect(before.framebuffers.map((f) => f.device)).toEqual(['efi-framebuffer.0']);
    expect(after.framebuffers).toEqual([]);
    expect(after.gpus.find((x) => x.fn.address === g.fn.address)).toMatchObject({ isBootGpu: true, framebuffers: [] });
  });
});
