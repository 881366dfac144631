import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockedError, InvalidArgumentError } from '../core/errors.js';
import { parsePciAddress } from '../core/pci-address.js';
import { discoverHost } from '../host/discover.js';
import type { HostSnapshot } from '../host/model.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import type { HostProfile } from '../profiles/profile.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import type { HostReader } from '../sysfs/port.js';
import { neutralAllocation } from './allocation.js';
import { DeviceFacts, pcieRootFromSysfsLink } from './facts.js';
import { DEFAULT_FRONT_END, parseFrontEnd } from './front-end.js';
import { computeSourceDevices } from './health.js';
import { addressFromDeviceName, cdiDeviceId, deviceName } from './names.js';

const PCI_IDS = ['10de  NVIDIA Corporation', '\t26b9  AD102GL [L40S]', '\t2684  AD102 [GeForce RTX 4090]', ''].join('\n');
const withPciIds = (base: HostReader): HostReader => ({ ...base, readText: async (p) => (p === 'usr/share/misc/pci.ids' ? PCI_IDS : base.readText(p)), readLink: (p) => base.readLink(p), list: (p) => base.list(p), exists: (p) => base.exists(p) });

async function host(name: string, patch: (p: HostProfile) => HostProfile = (p) => p): Promise<{ kernel: SimulatedKernel; snapshot: HostSnapshot }> {
  const kernel = new SimulatedKernel(patch(await loadBuiltinProfile(name)));
  return { kernel, snapshot: await discoverHost(kernel) };
}

// DNS-1123 label (ResourceSlice device names) and CDI SPEC.md device-name rule.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const CDI_NAME = /^[a-zA-Z0-9]([a-zA-Z0-9_.-]*[a-zA-Z0-9])?$/;
const hex = (n: number, w: number): string => n.toString(16).padStart(w, '0');

describe(deviceName.name, () => {
  it('names 0000:65:00.0 gpu-0000-65-00-0 and its CDI ID handoff.dev/gpu=gpu-0000-65-00-0 (DRA.md)', () => {
    expect(deviceName('0000:65:00.0')).toBe('gpu-0000-65-00-0');
    expect(cdiDeviceId('0000:65:00.0')).toBe('handoff.dev/gpu=gpu-0000-65-00-0');
  });
  it('is a DNS-1123 label and a CDI device name for every address, and reads back to the address', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xff }), fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0, max: 7 }), (d, b, s, f) => {
        const address = parsePciAddress(`${hex(d, 4)}:${hex(b, 2)}:${hex(s, 2)}.${f}`);
        const name = deviceName(address);
        expect(name).toMatch(DNS_LABEL);
        expect(name).toMatch(CDI_NAME);
        expect(addressFromDeviceName(name)).toBe(address);
      }),
    );
  });
  it.each(['65:00.0', '0000:65:00.0\n', '0000:65:00.0/../x', '0000:6G:00.0', '0000:65:00.8', 'gpu-0000-65-00-0'])('refuses %j (not a canonical address)', (raw) => {
    expect(() => deviceName(raw)).toThrow(InvalidArgumentError);
  });
  it.each(['gpu-0000-65-00-8', 'gpu-0000-65-20-0', 'GPU-0000-65-00-0', 'gpu-0000-65-00-0-x', 'cpu-0000-65-00-0', ''])('reads %j as no name of ours', (name) => {
    expect(addressFromDeviceName(name)).toBeUndefined();
  });
});

describe('GPU facts', () => {
  it('gives a server L40S its group, IDs, class, model, NUMA node and the root complex above its root port', async () => {
    const { kernel, snapshot } = await host('server-aspeed-l40s-vfio');
    const facts = await new DeviceFacts({ reader: withPciIds(kernel) }).describe(snapshot);
    const gpu2 = facts.find((f) => f.address === '0000:9b:00.0')!;
    expect(gpu2).toMatchObject({
      name: 'gpu-0000-9b-00-0',
      iommuGroup: snapshot.functions.find((f) => f.address === '0000:9b:00.0')!.iommuGroup,
      vendorId: '10de',
      deviceId: '26b9',
      classCode: 0x030200,
      kind: '3d',
      modelName: 'AD102GL [L40S]',
      numaNode: 1,
      pcieRoot: 'pci0000:9a',
      bootGpu: false,
      driver: 'vfio-pci',
    });
    // Every GPU has its own root complex here; the ASPEED BMC is the boot VGA and a GPU of ours too.
    expect(facts.map((f) => [f.address, f.pcieRoot, f.bootGpu])).toEqual([
      ['0000:02:00.0', 'pci0000:00', true],
      ['0000:18:00.0', 'pci0000:17', false],
      ['0000:3b:00.0', 'pci0000:3a', false],
      ['0000:9b:00.0', 'pci0000:9a', false],
      ['0000:bb:00.0', 'pci0000:ba', false],
    ]);
  });

  it('keeps the PCI domain in the root (arm64, domain 0004) and finds the workstation boot GPU and its audio companion', async () => {
    const arm = await host('arm64-domain-0004');
    const [a4000] = await new DeviceFacts({ reader: arm.kernel }).describe(arm.snapshot);
    expect(a4000).toMatchObject({ address: '0004:01:00.0', pcieRoot: 'pci0004:00', modelName: undefined, companions: ['0004:01:00.1'] });
    const ws = await host('workstation-efifb');
    const [rtx] = await new DeviceFacts({ reader: withPciIds(ws.kernel) }).describe(ws.snapshot);
    expect(rtx).toMatchObject({ address: '0000:01:00.0', bootGpu: true, modelName: 'AD102 [GeForce RTX 4090]', pcieRoot: 'pci0000:00', companions: ['0000:01:00.1'], numaNode: undefined });
  });

  it.each([
    ['../../../devices/pci0000:64/0000:64:01.0/0000:65:00.0', 'pci0000:64'],
    ['../../../devices/pci0004:00/0004:00:01.0/0004:01:00.0', 'pci0004:00'],
    ['../../../devices/platform/soc/fe000000.pcie/pci0000:00/0000:00:00.0', undefined],
    ['../../../devices/pciffff:zz/x', undefined],
    ['0000:65:00.0', undefined],
    [undefined, undefined],
  ])('reads the root complex of link %j as %j', (link, root) => {
    expect(pcieRootFromSysfsLink(link)).toBe(root);
  });
});

describe(computeSourceDevices.name, () => {
  it('offers ready GPUs Healthy and skips the rest; a GPU offered before stays, Unhealthy, with the reason', async () => {
    const { kernel, snapshot } = await host('server-aspeed-l40s-vfio');
    const first = computeSourceDevices(snapshot);
    expect(first.map((d) => [d.address, d.health])).toEqual([
      ['0000:18:00.0', 'Healthy'],
      ['0000:3b:00.0', 'Healthy'],
      ['0000:9b:00.0', 'Healthy'],
      ['0000:bb:00.0', 'Healthy'],
    ]);
    kernel.setDriverBinding('0000:3b:00.0', 'nvidia');
    const after = await discoverHost(kernel);
    expect(computeSourceDevices(after).map((d) => d.address)).not.toContain('0000:3b:00.0');
    const sticky = computeSourceDevices(after, new Set(first.map((d) => d.address)), new Set(['0000:18:00.0']));
    expect(sticky.filter((d) => d.health === 'Unhealthy')).toEqual([
      { address: '0000:18:00.0', health: 'Unhealthy', reason: 'WITHDRAWN' },
      { address: '0000:3b:00.0', health: 'Unhealthy', reason: 'NOT_ON_VFIO_PCI' },
    ]);
  });

  it('takes a front end’s own readiness (DRA offers a GPU still on its native driver; the handoff is at prepare)', async () => {
    const { snapshot } = await host('arm64-domain-0004');
    expect(computeSourceDevices(snapshot)).toEqual([]);
    expect(computeSourceDevices(snapshot, new Set(), new Set(), () => undefined)).toEqual([{ address: '0004:01:00.0', health: 'Healthy', reason: undefined }]);
  });
});

describe(neutralAllocation.name, () => {
  const offered = (s: HostSnapshot): Set<string> => new Set(s.gpus.map((g) => g.fn.address));

  it('with iommufd: vfio container, the group node, /dev/iommu and the cdev of every vfio function of the groups, plus CDI IDs in request order', async () => {
    const { snapshot } = await host('server-aspeed-l40s-vfio');
    const g = (a: string): number => snapshot.functions.find((f) => f.address === a)!.iommuGroup!;
    const cdev = (a: string): string => `/dev/vfio/devices/${snapshot.functions.find((f) => f.address === a)!.vfioDevices[0]}`;
    const a = neutralAllocation(snapshot, { addresses: ['0000:9b:00.0', '0000:18:00.0'], offered: offered(snapshot), context: 'test' });
    expect(a.addresses).toEqual(['0000:9b:00.0', '0000:18:00.0']);
    expect(a.groups).toEqual([g('0000:9b:00.0'), g('0000:18:00.0')]);
    expect(a.deviceNodes).toEqual(['/dev/vfio/vfio', `/dev/vfio/${g('0000:9b:00.0')}`, `/dev/vfio/${g('0000:18:00.0')}`, '/dev/iommu', cdev('0000:9b:00.0'), cdev('0000:18:00.0')]);
    expect(a.cdiDevices).toEqual(['handoff.dev/gpu=gpu-0000-9b-00-0', 'handoff.dev/gpu=gpu-0000-18-00-0']);
  });

  it('without iommufd: only the vfio container and the group nodes', async () => {
    const { snapshot } = await host('server-aspeed-l40s-vfio', (p) => ({ ...p, iommufd: false }));
    const a = neutralAllocation(snapshot, { addresses: ['0000:18:00.0'], offered: offered(snapshot), context: 'test' });
    expect(a.deviceNodes).toEqual(['/dev/vfio/vfio', `/dev/vfio/${a.groups[0]}`]);
  });

  it('refuses an empty request, a device not offered, a duplicate (InvalidArgument) and a GPU that is not ready (Blocked, with the reason)', async () => {
    const { snapshot } = await host('server-aspeed-l40s-vfio');
    const req = (addresses: string[], off = offered(snapshot)) => () => neutralAllocation(snapshot, { addresses, offered: off, context: 'test' });
    expect(req([])).toThrow(InvalidArgumentError);
    expect(req(['0000:18:00.0'], new Set(['0000:3b:00.0']))).toThrow(InvalidArgumentError);
    expect(req(['0000:18:00.1'])).toThrow(InvalidArgumentError);
    expect(req(['0000:18:00.0', '0000:18:00.0'])).toThrow(InvalidArgumentError);
    expect(() => neutralAllocation(snapshot, { addresses: ['0000:18:00.0'], offered: offered(snapshot), fresh: new Map([['0000:18:00.0', 'NO_VFIO_GROUP_NODE']]), context: 'test' })).toThrow(
      expect.objectContaining({ constructor: BlockedError, reasons: [expect.objectContaining({ code: 'NO_VFIO_GROUP_NODE' })] }),
    );
  });
});

describe(parseFrontEnd.name, () => {
  it('knows device-plugin (the default) and dra, and refuses anything else', () => {
    expect(DEFAULT_FRONT_END).toBe('device-plugin');
    expect(parseFrontEnd('dra')).toBe('dra');
    expect(parseFrontEnd('device-plugin')).toBe('device-plugin');
    expect(() => parseFrontEnd('both')).toThrow(InvalidArgumentError);
  });
});
