import { describe, expect, it } from 'vitest';
import { parsePciAddress, type PciAddress } from '../core/pci-address.js';
import type { HostReader } from '../sysfs/port.js';
import { discoverHost } from './discover.js';
import type { HostSnapshot } from './model.js';

/** A tiny map-backed host: files and links by path; directories are implied by their children. */
class FakeHost implements HostReader {
  private readonly files = new Map<string, string>();
  private readonly links = new Map<string, string>();
  readonly readPaths: string[] = [];

  file(path: string, text: string): this {
    this.files.set(path, text);
    return this;
  }

  link(path: string, target: string): this {
    this.links.set(path, target);
    return this;
  }

  async readText(path: string): Promise<string | undefined> {
    this.readPaths.push(path);
    return this.files.get(path);
  }

  async readLink(path: string): Promise<string | undefined> {
    this.readPaths.push(path);
    return this.links.get(path);
  }

  async list(path: string): Promise<string[]> {
    this.readPaths.push(path);
    const prefix = `${path}/`;
    const names = new Set<string>();
    for (const key of [...this.files.keys(), ...this.links.keys()]) {
      if (key.startsWith(prefix)) names.add(key.slice(prefix.length).split('/')[0]!);
    }
    return [...names].sort();
  }

  async exists(path: string): Promise<boolean> {
    this.readPaths.push(path);
    if (this.files.has(path) || this.links.has(path)) return true;
    return [...this.files.keys(), ...this.links.keys()].some((k) => k.startsWith(`${path}/`));
  }
}

interface Dev {
  class: string;
  id: string; // vendor:device
  driver?: string;
  group?: number;
  numa?: number;
  bootVga?: 0 | 1;
  bootDisplay?: boolean;
  override?: string;
  reset?: string;
  bars?: readonly (readonly [number, bigint, bigint, bigint])[]; // index, start, end, flags
  sriov?: readonly [number, number];
  physfn?: string;
  consumers?: readonly string[];
  vfioDev?: string;
}

const MEM_PREF = 0x14220cn;
const MEM = 0x40200n;
const hex16 = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;

function addDevice(h: FakeHost, addr: string, d: Dev): void {
  const dir = `sys/bus/pci/devices/${addr}`;
  const [vendor, device] = d.id.split(':') as [string, string];
  h.file(`${dir}/class`, `${d.class}\n`).file(`${dir}/vendor`, `0x${vendor}\n`).file(`${dir}/device`, `0x${device}\n`);
  h.file(`${dir}/subsystem_vendor`, `0x${vendor}\n`).file(`${dir}/subsystem_device`, '0x1234\n');
  h.file(`${dir}/numa_node`, `${d.numa ?? -1}\n`);
  h.file(`${dir}/driver_override`, `${d.override ?? '(null)'}\n`);
  if (d.reset !== undefined) h.file(`${dir}/reset_method`, `${d.reset}\n`);
  if (d.driver) h.link(`${dir}/driver`, `../../../bus/pci/drivers/${d.driver}`);
  if (d.group !== undefined) {
    h.link(`${dir}/iommu_group`, `../../../kernel/iommu_groups/${d.group}`);
    h.link(`sys/kernel/iommu_groups/${d.group}/devices/${addr}`, `../../../../devices/pci0000:00/${addr}`);
  }
  if (d.bootVga !== undefined) h.file(`${dir}/boot_vga`, `${d.bootVga}\n`);
  if (d.bootDisplay) h.file(`${dir}/boot_display`, '1\n');
  const lines: string[] = [];
  for (let i = 0; i < 13; i++) {
    const bar = d.bars?.find((b) => b[0] === i);
    lines.push(bar ? `${hex16(bar[1])} ${hex16(bar[2])} ${hex16(bar[3])}` : `${hex16(0n)} ${hex16(0n)} ${hex16(0n)}`);
  }
  h.file(`${dir}/resource`, `${lines.join('\n')}\n`);
  if (d.sriov) h.file(`${dir}/sriov_totalvfs`, `${d.sriov[0]}\n`).file(`${dir}/sriov_numvfs`, `${d.sriov[1]}\n`);
  if (d.physfn) h.link(`${dir}/physfn`, `../${d.physfn}`);
  for (const c of d.consumers ?? []) h.link(`${dir}/consumer:pci:${c}`, `../../../virtual/devlink/pci:${addr}--pci:${c}`);
  if (d.vfioDev) h.file(`${dir}/vfio-dev/${d.vfioDev}/dev`, '511:0\n');
}

function host(devices: Record<string, Dev>, extra: (h: FakeHost) => void = () => undefined): FakeHost {
  const h = new FakeHost().file('proc/sys/kernel/osrelease', '6.12.117+deb12-amd64\n');
  for (const [addr, d] of Object.entries(devices)) addDevice(h, addr, d);
  extra(h);
  return h;
}

const A = (s: string): PciAddress => parsePciAddress(s);
const gpu = (snap: HostSnapshot, addr: string) => snap.gpus.find((g) => g.fn.address === addr);
const fn = (snap: HostSnapshot, addr: string) => snap.functions.find((f) => f.address === addr);

describe(discoverHost.name, () => {
  describe('workstation: boot GPU under efifb with its audio function and a root port', () => {
    const make = (): FakeHost =>
      host(
        {
          '0000:00:01.0': { class: '0x060400', id: '8086:1901', driver: 'pcieport', group: 1 },
          '0000:01:00.0': {
            class: '0x030000',
            id: '10de:2684',
            group: 1,
            bootVga: 1,
            reset: 'flr bus',
            bars: [
              [0, 0xfb000000n, 0xfbffffffn, MEM],
              [1, 0x6000000000n, 0x600fffffffn, MEM_PREF],
              [3, 0x6010000000n, 0x6011ffffffn, MEM_PREF],
              [5, 0xe000n, 0xe07fn, 0x40101n],
            ],
            consumers: ['0000:01:00.1'],
          },
          '0000:01:00.1': { class: '0x040300', id: '10de:22ba', driver: 'snd_hda_intel', group: 1 },
          '0000:02:00.0': { class: '0x030000', id: '10de:2204', driver: 'vfio-pci', override: 'vfio-pci', group: 10, bootVga: 0, numa: 0, vfioDev: 'vfio3' },
          '0000:03:00.0': { class: '0x020000', id: '8086:1533', driver: 'igb', group: 2, numa: 0 },
        },
        (h) => {
          h.file('sys/bus/pci/devices/not-a-device/class', '0x030000\n');
          h.link('sys/bus/platform/devices/efi-framebuffer.0', '../../../devices/platform/efi-framebuffer.0');
          h.link('sys/bus/platform/devices/efi-framebuffer.0/driver', '../../../bus/platform/drivers/efi-framebuffer');
          h.link('sys/bus/platform/devices/serial8250', '../../../devices/platform/serial8250');
          h.file(
            'proc/iomem',
            [
              '00100000-bffdffff : System RAM',
              'fb000000-fbffffff : 0000:01:00.0',
              '6000000000-600fffffff : 0000:01:00.0',
              '  6000000000-60007e8fff : efifb',
              '',
            ].join('\n'),
          );
          h.file('sys/class/vtconsole/vtcon0/name', '(S) dummy device\n').file('sys/class/vtconsole/vtcon0/bind', '0\n');
          h.file('sys/class/vtconsole/vtcon1/name', '(M) frame buffer device\n').file('sys/class/vtconsole/vtcon1/bind', '1\n');
          h.file('lib/modules/6.12.117+deb12-amd64/modules.dep', 'kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/vfio.ko.xz\n');
          h.file('dev/vfio/vfio', '').file('dev/vfio/10', '');
        },
      );

    it('lists every valid function sorted, ignoring garbage names', async () => {
      const snap = await discoverHost(make());
      expect(snap.functions.map((f) => f.address)).toEqual(['0000:00:01.0', '0000:01:00.0', '0000:01:00.1', '0000:02:00.0', '0000:03:00.0']);
      expect(snap.gpus.map((g) => g.fn.address)).toEqual(['0000:01:00.0', '0000:02:00.0']);
    });

    it('sorts IOMMU groups numerically and takes each function group from them', async () => {
      const snap = await discoverHost(make());
      expect(snap.iommuEnabled).toBe(true);
      expect(snap.groups).toEqual([
        { id: 1, members: ['0000:00:01.0', '0000:01:00.0', '0000:01:00.1'] },
        { id: 2, members: ['0000:03:00.0'] },
        { id: 10, members: ['0000:02:00.0'] },
      ]);
      expect(fn(snap, '0000:01:00.1')?.iommuGroup).toBe(1);
    });

    it('finds the boot GPU, its companion and the framebuffer in its BAR 1', async () => {
      const snap = await discoverHost(make());
      expect(gpu(snap, '0000:01:00.0')).toMatchObject({
        kind: 'vga',
        isBootGpu: true,
        companions: ['0000:01:00.1'],
        framebuffers: ['efi-framebuffer.0'],
      });
      expect(snap.framebuffers).toEqual([
        {
          device: 'efi-framebuffer.0',
          type: 'efi-framebuffer',
          driver: 'efi-framebuffer',
          claim: 'efifb',
          range: { start: 0x6000000000n, end: 0x60007e8fffn },
          owner: { address: A('0000:01:00.0'), bar: 1 },
          parent: undefined,
        },
      ]);
      expect(gpu(snap, '0000:02:00.0')).toMatchObject({ isBootGpu: false, framebuffers: [], companions: [] });
    });

    it('reads the function attributes into the model', async () => {
      const snap = await discoverHost(make());
      expect(fn(snap, '0000:01:00.0')).toMatchObject({
        vendorId: '10de',
        deviceId: '2684',
        subsystemVendorId: '10de',
        subsystemDeviceId: '1234',
        classCode: 0x030000,
        driver: undefined,
        driverOverride: undefined,
        numaNode: undefined,
        bootVga: true,
        resetMethods: ['flr', 'bus'],
        sriovTotalVfs: undefined,
        physfn: undefined,
        isBridge: false,
        vfioDevices: [],
      });
      expect(fn(snap, '0000:01:00.0')?.bars.map((b) => b.index)).toEqual([0, 1, 3, 5]);
      expect(fn(snap, '0000:02:00.0')).toMatchObject({ driver: 'vfio-pci', driverOverride: 'vfio-pci', numaNode: 0, bootVga: false, vfioDevices: ['vfio3'] });
      expect(fn(snap, '0000:00:01.0')).toMatchObject({ driver: 'pcieport', isBridge: true });
    });

    it('reports vtconsoles, kernel, vfio-pci availability and /dev/vfio nodes', async () => {
      const snap = await discoverHost(make());
      expect(snap.vtconsoles).toEqual([
        { name: 'vtcon0', description: '(S) dummy device', bound: false, kind: 'dummy' },
        { name: 'vtcon1', description: '(M) frame buffer device', bound: true, kind: 'fbcon' },
      ]);
      expect(snap.kernel).toEqual({ release: '6.12.117+deb12-amd64', major: 6, minor: 12 });
      expect(snap.vfioPci).toEqual({ loaded: false, loadable: true });
      expect(snap.iommufd).toBe(false);
      expect(snap.vfioGroupNodes).toEqual([10]);
    });

    it('reads only class, ids and driver of functions unrelated to any GPU, unless asked for everything', async () => {
      const h = make();
      const snap = await discoverHost(h);
      expect(fn(snap, '0000:03:00.0')).toMatchObject({ driver: 'igb', iommuGroup: 2, numaNode: undefined });
      expect(h.readPaths.filter((p) => p.startsWith('sys/bus/pci/devices/0000:03:00.0/')).sort()).toEqual(
        ['class', 'device', 'driver', 'vendor'].map((a) => `sys/bus/pci/devices/0000:03:00.0/${a}`),
      );
      const all = await discoverHost(make(), { detail: 'full' });
      expect(fn(all, '0000:03:00.0')).toMatchObject({ numaNode: 0, subsystemDeviceId: '1234' });
    });

    it('reads no file twice', async () => {
      const h = make();
      await discoverHost(h);
      expect(h.readPaths.length).toBe(new Set(h.readPaths).size);
    });
  });

  it('ASPEED BMC behind its bridge is the boot GPU; datacenter 3D controllers have no boot_vga', async () => {
    const snap = await discoverHost(
      host({
        '0000:05:00.0': { class: '0x060400', id: '1a03:1150', group: 17 },
        '0000:06:00.0': { class: '0x030000', id: '1a03:2000', driver: 'ast', group: 17, bootVga: 1, numa: 0 },
        '0000:41:00.0': { class: '0x030200', id: '10de:2331', driver: 'nvidia', group: 40, numa: 0 },
        '0000:c1:00.0': { class: '0x030200', id: '10de:2331', driver: 'nvidia', group: 141, numa: 1 },
      }),
    );
    expect(snap.gpus.map((g) => [g.fn.address, g.kind, g.isBootGpu, g.fn.bootVga, g.fn.classCode])).toEqual([
      ['0000:06:00.0', 'vga', true, true, 0x030000],
      ['0000:41:00.0', '3d', false, undefined, 0x030200],
      ['0000:c1:00.0', '3d', false, undefined, 0x030200],
    ]);
    expect(gpu(snap, '0000:06:00.0')?.companions).toEqual([]);
    expect(snap.groups.map((g) => g.id)).toEqual([17, 40, 141]);
    expect(fn(snap, '0000:c1:00.0')?.numaNode).toBe(1);
  });

  it('a Turing card has three companions; a foreign USB controller of another slot in the group is not one', async () => {
    const snap = await discoverHost(
      host({
        '0000:00:01.0': { class: '0x060400', id: '8086:1901', driver: 'pcieport', group: 1 },
        '0000:00:14.0': { class: '0x0c0330', id: '8086:a36d', driver: 'xhci_hcd', group: 1 },
        '0000:1b:00.0': { class: '0x030000', id: '10de:1e04', driver: 'nouveau', group: 1, bootVga: 0, consumers: ['0000:1b:00.1'] },
        '0000:1b:00.1': { class: '0x040300', id: '10de:10f7', driver: 'snd_hda_intel', group: 1 },
        '0000:1b:00.2': { class: '0x0c0330', id: '10de:1ad6', driver: 'xhci_hcd', group: 1 },
        '0000:1b:00.3': { class: '0x0c8000', id: '10de:1ad7', driver: 'nvidia-gpu', group: 1 },
      }),
    );
    expect(snap.gpus).toHaveLength(1);
    expect(snap.gpus[0]?.companions).toEqual(['0000:1b:00.1', '0000:1b:00.2', '0000:1b:00.3']);
    expect(fn(snap, '0000:00:14.0')).toMatchObject({ driver: 'xhci_hcd', isBridge: false });
  });

  it('without an IOMMU: no groups, companions by slot, iommu reported off', async () => {
    const snap = await discoverHost(
      host({
        '0000:01:00.0': { class: '0x030000', id: '10de:2684', driver: 'nvidia', bootVga: 1 },
        '0000:01:00.1': { class: '0x040300', id: '10de:22ba', driver: 'snd_hda_intel' },
        '0000:02:00.0': { class: '0x040300', id: '8086:a348', driver: 'snd_hda_intel' },
      }),
    );
    expect(snap.iommuEnabled).toBe(false);
    expect(snap.groups).toEqual([]);
    expect(snap.functions.every((f) => f.iommuGroup === undefined)).toBe(true);
    expect(snap.gpus[0]?.companions).toEqual(['0000:01:00.1']);
  });

  it('handles a non-zero PCI domain and NUMA -1', async () => {
    const snap = await discoverHost(host({ '0004:01:00.0': { class: '0x030000', id: '10de:24b0', driver: 'nvidia', group: 26, numa: -1, bootVga: 0 } }));
    expect(snap.gpus.map((g) => [g.fn.address, g.fn.iommuGroup, g.fn.numaNode])).toEqual([['0004:01:00.0', 26, undefined]]);
  });

  it('Intel Arc: audio behind the on-card switch in its own group is not a companion', async () => {
    const snap = await discoverHost(
      host({
        '0000:05:00.0': { class: '0x060400', id: '8086:4fa0', driver: 'pcieport', group: 23 },
        '0000:06:01.0': { class: '0x060400', id: '8086:4fa4', driver: 'pcieport', group: 24 },
        '0000:06:04.0': { class: '0x060400', id: '8086:4fa4', driver: 'pcieport', group: 25 },
        '0000:07:00.0': { class: '0x030000', id: '8086:56a0', driver: 'i915', group: 26, bootVga: 0 },
        '0000:08:00.0': { class: '0x040300', id: '8086:4f90', driver: 'snd_hda_intel', group: 27 },
      }),
    );
    expect(snap.gpus.map((g) => [g.fn.address, g.companions])).toEqual([['0000:07:00.0', []]]);
  });

  it('MI300X: class 0x1200 PF is a GPU, and so is each of its VFs (own group, physfn link), never a companion of the PF', async () => {
    const snap = await discoverHost(
      host({
        '0000:85:00.0': { class: '0x120000', id: '1002:74a1', driver: 'gim', group: 60, sriov: [8, 2] },
        '0000:85:02.0': { class: '0x120000', id: '1002:74b5', driver: 'vfio-pci', group: 61, physfn: '0000:85:00.0' },
        '0000:85:02.1': { class: '0x120000', id: '1002:74b5', driver: 'vfio-pci', group: 62, physfn: '0000:85:00.0' },
        '0000:86:00.0': { class: '0x120000', id: '15b3:1021', driver: 'mlx5_core', group: 63 },
      }),
    );
    expect(snap.gpus.map((g) => [g.fn.address, g.kind, g.fn.sriovTotalVfs, g.fn.sriovNumVfs, g.fn.physfn])).toEqual([
      ['0000:85:00.0', 'accelerator', 8, 2, undefined],
      ['0000:85:02.0', 'accelerator', undefined, undefined, '0000:85:00.0'],
      ['0000:85:02.1', 'accelerator', undefined, undefined, '0000:85:00.0'],
    ]);
    expect(snap.gpus.flatMap((g) => g.companions)).toEqual([]);
  });

  it('HGX: NVSwitches (class 0x0680) are neither GPUs nor bridges', async () => {
    const snap = await discoverHost(
      host({
        '0000:bc:02.0': { class: '0x060400', id: '11f8:4128', driver: 'pcieport', group: 82 },
        '0000:bd:00.0': { class: '0x068000', id: '10de:22a3', group: 82 },
        '0000:be:00.0': { class: '0x068000', id: '10de:22a3', group: 82 },
        '0000:18:00.0': { class: '0x030200', id: '10de:2330', driver: 'nvidia', group: 30 },
      }),
    );
    expect(snap.gpus.map((g) => g.fn.address)).toEqual(['0000:18:00.0']);
    expect(fn(snap, '0000:bd:00.0')?.isBridge).toBe(false);
  });

  it('with a zeroed /proc/iomem (unprivileged) the framebuffer range is unknown; a sysfb parent still marks the boot GPU', async () => {
    const snap = await discoverHost(
      host({ '0000:03:00.0': { class: '0x038000', id: '1234:1111', group: 3, bars: [[0, 0xc0000000n, 0xc0ffffffn, MEM_PREF]] } }, (h) => {
        h.link('sys/bus/platform/devices/simple-framebuffer.0', '../../../devices/pci0000:00/0000:03:00.0/simple-framebuffer.0');
        h.file('proc/iomem', '00000000-00000000 : 0000:03:00.0\n  00000000-00000000 : simpledrm\n');
      }),
    );
    expect(snap.framebuffers).toEqual([
      { device: 'simple-framebuffer.0', type: 'simple-framebuffer', driver: undefined, claim: undefined, range: undefined, owner: undefined, parent: '0000:03:00.0' },
    ]);
    expect(gpu(snap, '0000:03:00.0')).toMatchObject({ kind: 'display', isBootGpu: true, framebuffers: ['simple-framebuffer.0'] });
  });

  it('boot_display marks the boot GPU of a non-VGA class', async () => {
    const snap = await discoverHost(host({ '0000:03:00.0': { class: '0x038000', id: '1002:66a1', group: 3, bootDisplay: true } }));
    expect(gpu(snap, '0000:03:00.0')).toMatchObject({ isBootGpu: true });
    expect(fn(snap, '0000:03:00.0')).toMatchObject({ bootVga: undefined, bootDisplay: true });
  });

  it('leaves out a device that vanished mid-scan but keeps it as a group member', async () => {
    const h = host({ '0000:01:00.0': { class: '0x030200', id: '10de:2331', group: 5 } }, (x) => {
      x.link('sys/bus/pci/devices/0000:01:00.1/driver', '../../../bus/pci/drivers/snd_hda_intel');
      x.link('sys/kernel/iommu_groups/5/devices/0000:01:00.1', '../../../../devices/pci0000:00/0000:01:00.1');
    });
    const snap = await discoverHost(h);
    expect(snap.functions.map((f) => f.address)).toEqual(['0000:01:00.0']);
    expect(snap.groups).toEqual([{ id: 5, members: ['0000:01:00.0', '0000:01:00.1'] }]);
  });

  it('reports vfio-pci loaded from its driver directory and iommufd from /dev/iommu', async () => {
    const snap = await discoverHost(
      host({}, (h) => {
        h.file('sys/bus/pci/drivers/vfio-pci/new_id', '');
        h.file('dev/iommu', '');
      }),
    );
    expect(snap.vfioPci).toEqual({ loaded: true, loadable: true });
    expect(snap.iommufd).toBe(true);
    expect(snap.gpus).toEqual([]);
    const none = await discoverHost(host({}));
    expect(none.vfioPci).toEqual({ loaded: false, loadable: false });
  });
});
