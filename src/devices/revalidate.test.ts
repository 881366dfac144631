import { describe, expect, it } from 'vitest';
import { discoverHost } from '../host/discover.js';
import type { HostProfile } from '../profiles/profile.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { hostFingerprint } from './fingerprint.js';
import { revalidateDevices } from './revalidate.js';

const GPU = '0000:01:00.0';
const AUDIO = '0000:01:00.1';
const profile: HostProfile = {
  name: 'one-gpu-vfio',
  kernelRelease: '6.8.0-51-generic',
  loadedDrivers: ['vfio-pci', 'nvidia', 'snd_hda_intel'],
  devices: [
    { address: GPU, class: '0x030000', vendor: '10de', device: '2204', driver: 'vfio-pci', iommuGroup: 12, numaNode: 0, consumers: [`consumer:pci:${AUDIO}`] },
    { address: AUDIO, class: '0x040300', vendor: '10de', device: '1aef', driver: 'vfio-pci', iommuGroup: 12, numaNode: 0 },
    { address: '0000:05:00.0', class: '0x010802', vendor: '144d', device: 'a808', driver: 'nvme', iommuGroup: 20 },
  ],
};

async function setup(): Promise<{ kernel: SimulatedKernel; snapshot: Awaited<ReturnType<typeof discoverHost>> }> {
  const kernel = new SimulatedKernel(profile);
  return { kernel, snapshot: await discoverHost(kernel) };
}

describe(revalidateDevices.name, () => {
  it('confirms a ready GPU and reads no device node contents', async () => {
    const { kernel, snapshot } = await setup();
    const reads: string[] = [];
    const spy = {
      readText: async (p: string) => (reads.push(p), kernel.readText(p)),
      readLink: (p: string) => kernel.readLink(p),
      list: (p: string) => kernel.list(p),
      exists: (p: string) => kernel.exists(p),
    };
    expect(await revalidateDevices(spy, snapshot, [GPU])).toEqual(new Map([[GPU, undefined]]));
    // Only /proc/iomem (BAR claims) is read as a file; /dev/vfio/<group> is checked by existence, never read.
    expect(reads).toEqual(['proc/iomem']);
  });

  it.each([
    ['the GPU left vfio-pci', (k: SimulatedKernel) => k.setDriverBinding(GPU, 'nvidia'), 'NOT_ON_VFIO_PCI'],
    ['the audio sibling went to snd_hda_intel', (k: SimulatedKernel) => k.setDriverBinding(AUDIO, 'snd_hda_intel'), 'GROUP_NOT_VIABLE'],
    ['the audio sibling was unbound', (k: SimulatedKernel) => k.setDriverBinding(AUDIO, undefined), undefined],
    [
      'a new function joined the group',
      (k: SimulatedKernel) => k.addDevice({ address: '0000:01:00.2', class: '0x0c0330', vendor: '10de', device: '1ad8', driver: 'vfio-pci', iommuGroup: 12 }),
      'GROUP_NOT_VIABLE',
    ],
  ])('reports when %s', async (_name, change, reason) => {
    const { kernel, snapshot } = await setup();
    change(kernel);
    expect((await revalidateDevices(kernel, snapshot, [GPU])).get(GPU)).toBe(reason);
  });

  it('reports BAR_CLAIMED when a firmware framebuffer claims a BAR of the GPU', async () => {
    const withFb: HostProfile = {
      ...profile,
      devices: profile.devices.map((d) => (d.address === GPU ? { ...d, class: '0x038000', bars: [{ index: 0, start: '0xc0000000', size: '16M' }] } : d)),
      framebuffers: [{ device: 'efi-framebuffer.0', driver: 'efi-framebuffer', claim: 'efifb', start: '0xc0000000', size: '0x3e8000' }],
    };
    const kernel = new SimulatedKernel(withFb);
    await kernel.writeText('sys/bus/platform/drivers/efi-framebuffer/unbind', 'efi-framebuffer.0');
    const snapshot = await discoverHost(kernel);
    expect((await revalidateDevices(kernel, snapshot, [GPU])).get(GPU)).toBeUndefined();
    await kernel.writeText('sys/bus/platform/drivers/efi-framebuffer/bind', 'efi-framebuffer.0');
    expect((await revalidateDevices(kernel, snapshot, [GPU])).get(GPU)).toBe('BAR_CLAIMED');
  });

  it('ignores IDs that are not in the snapshot (the snapshot check rejects them)', async () => {
    const { kernel, snapshot } = await setup();
    expect(await revalidateDevices(kernel, snapshot, ['0000:99:00.0'])).toEqual(new Map());
  });
});

describe(hostFingerprint.name, () => {
  it('is stable without changes and moves with every change readiness depends on', async () => {
    const { kernel, snapshot } = await setup();
    const base = await hostFingerprint(kernel, snapshot);
    expect(await hostFingerprint(kernel, snapshot)).toBe(base);
    // Unrelated: a foreign device's driver outside any GPU group.
    kernel.setDriverBinding('0000:05:00.0', undefined);
    expect(await hostFingerprint(kernel, snapshot)).toBe(base);
    kernel.setDriverBinding('0000:05:00.0', 'nvme');

    kernel.setDriverBinding(AUDIO, 'snd_hda_intel');
    const changed = await hostFingerprint(kernel, snapshot);
    expect(changed).not.toBe(base);
    kernel.setDriverBinding(AUDIO, 'vfio-pci');
    expect(await hostFingerprint(kernel, snapshot)).toBe(base);

    kernel.addDevice({ address: '0000:81:00.0', class: '0x030000', vendor: '10de', device: '2204', driver: 'vfio-pci', iommuGroup: 40 });
    expect(await hostFingerprint(kernel, snapshot)).not.toBe(base);
  });
});
