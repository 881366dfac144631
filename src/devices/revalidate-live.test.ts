/**
 * Allocate's revalidation against a live host that moved since the snapshot, on hand-built snapshots and
 * a fake reader: a GPU without an IOMMU group is not revalidated (no read, no answer: the snapshot check
 * rejects it); a GPU gone from its group's live listing is NO_IOMMU_GROUP; a function that joined the
 * group makes it GROUP_NOT_VIABLE, judged by the live listing; a missing `/dev/vfio/<group>` is
 * NO_VFIO_GROUP_NODE; a GPU whose group the snapshot has no member listing for is judged by its own live
 * driver; a function the snapshot knows without a group that now shows up in the GPU's group counts with
 * the driver the snapshot saw.
 */
import { describe, expect, it } from 'vitest';
import type { PciAddress } from '../core/pci-address.js';
import type { HostReader } from '../sysfs/port.js';
import { snapshot } from '../../test/support/deviceplugin-snapshots.js';
import { revalidateDevices } from './revalidate.js';

const GPU = '0000:01:00.0';
const AUDIO = '0000:01:00.1';

interface LiveHost {
  /** IOMMU group → the addresses listed in /sys/kernel/iommu_groups/<n>/devices. */
  readonly groups: Readonly<Record<number, readonly string[]>>;
  /** PCI address → the driver its `driver` link points at (absent: unbound or gone). */
  readonly drivers: Readonly<Record<string, string>>;
  /** Groups whose /dev/vfio/<n> exists. */
  readonly nodes: readonly number[];
}

/** A HostReader over `live`, recording every path it is asked about. */
function liveReader(live: LiveHost): HostReader & { readonly asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    readText: async (p) => (asked.push(p), undefined),
    readLink: async (p) => {
      asked.push(p);
      const m = /^sys\/bus\/pci\/devices\/([^/]+)\/driver$/.exec(p);
      const driver = m ? live.drivers[m[1]!] : undefined;
      return driver === undefined ? undefined : `../../../bus/pci/drivers/${driver}`;
    },
    list: async (p) => {
      asked.push(p);
      const m = /^sys\/kernel\/iommu_groups\/(\d+)\/devices$/.exec(p);
      return m ? [...(live.groups[Number(m[1])] ?? [])] : [];
    },
    exists: async (p) => {
      asked.push(p);
      const m = /^dev\/vfio\/(\d+)$/.exec(p);
      return m !== null && live.nodes.includes(Number(m[1]));
    },
  };
}

/** GPU + audio in group 12, both on vfio-pci, /dev/vfio/12 and /dev/vfio/30 present. */
const host = snapshot(
  [
    { address: GPU, group: 12, numa: 0, gpu: { companions: [AUDIO] } },
    { address: AUDIO, group: 12, numa: 0, deviceId: '1aef' },
    { address: '0000:41:00.0', group: 30, numa: 1, gpu: {} },
  ],
  { vfioGroupNodes: [12, 30] },
);
const unchanged: LiveHost = { groups: { 12: [GPU, AUDIO], 30: ['0000:41:00.0'] }, drivers: { [GPU]: 'vfio-pci', [AUDIO]: 'vfio-pci', '0000:41:00.0': 'vfio-pci' }, nodes: [12, 30] };

describe(`${revalidateDevices.name} against a changed host`, () => {
  it('confirms an unchanged GPU', async () => {
    expect(await revalidateDevices(liveReader(unchanged), host, [GPU])).toEqual(new Map([[GPU, undefined]]));
  });

  it('gives no answer, and reads nothing, for a GPU without an IOMMU group (IOMMU off)', async () => {
    const noIommu = { ...snapshot([{ address: GPU, gpu: {} }]), iommuEnabled: false };
    const reader = liveReader(unchanged);
    expect(await revalidateDevices(reader, noIommu, [GPU])).toEqual(new Map());
    expect(reader.asked).toEqual([]);
  });

  it('reports NO_IOMMU_GROUP when the GPU is gone from its group (hot-removed: no listing, no driver link)', async () => {
    const removed: LiveHost = { ...unchanged, groups: { ...unchanged.groups, 12: [AUDIO] }, drivers: { [AUDIO]: 'vfio-pci' } };
    expect(await revalidateDevices(liveReader(removed), host, [GPU])).toEqual(new Map([[GPU, 'NO_IOMMU_GROUP']]));
  });

  it('reports GROUP_NOT_VIABLE when a function the snapshot does not know joined the group', async () => {
    const joined: LiveHost = { ...unchanged, groups: { ...unchanged.groups, 12: [GPU, AUDIO, '0000:01:00.2'] } };
    expect(await revalidateDevices(liveReader(joined), host, [GPU])).toEqual(new Map([[GPU, 'GROUP_NOT_VIABLE']]));
  });

  it('reports NO_VFIO_GROUP_NODE when /dev/vfio/<group> went away, whatever other group nodes exist', async () => {
    const noNode: LiveHost = { ...unchanged, nodes: [30] };
    expect(await revalidateDevices(liveReader(noNode), host, [GPU, '0000:41:00.0'])).toEqual(
      new Map([
        [GPU, 'NO_VFIO_GROUP_NODE'],
        ['0000:41:00.0', undefined],
      ]),
    );
  });

  it('judges a GPU whose group the snapshot has no member listing for by its own live driver', async () => {
    const unlisted = { ...host, groups: host.groups.filter((g) => g.id !== 12) };
    const onNvidia: LiveHost = { ...unchanged, drivers: { ...unchanged.drivers, [GPU]: 'nvidia' } };
    expect(await revalidateDevices(liveReader(onNvidia), unlisted, [GPU])).toEqual(new Map([[GPU, 'NOT_ON_VFIO_PCI']]));
    const reader = liveReader(unchanged);
    expect(await revalidateDevices(reader, unlisted, [GPU])).toEqual(new Map([[GPU, undefined]]));
    expect(reader.asked).toContain(`sys/bus/pci/devices/${GPU}/driver`);
  });

  it('counts a function the snapshot saw without a group, now listed in the GPU group, with the driver it had', async () => {
    // Hot-added while the snapshot was taken: the function was read (on snd_hda_intel) before its group link existed.
    const base = snapshot([
      { address: GPU, group: 12, gpu: { companions: [AUDIO] } },
      { address: AUDIO, group: undefined, deviceId: '1aef', driver: 'snd_hda_intel' },
    ]);
    expect(base.groups).toEqual([{ id: 12, members: [GPU as PciAddress] }]);
    const live: LiveHost = { groups: { 12: [GPU, AUDIO] }, drivers: { [GPU]: 'vfio-pci', [AUDIO]: 'snd_hda_intel' }, nodes: [12] };
    expect(await revalidateDevices(liveReader(live), base, [GPU])).toEqual(new Map([[GPU, 'GROUP_NOT_VIABLE']]));
  });
});
