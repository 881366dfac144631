/**
 * The neutral allocation's own contract, below the device-plugin wire shape: an empty request is refused
 * with its message; two GPUs sharing one IOMMU group (behind a switch without ACS) give that group once;
 * and the iommufd device nodes of a group skip members the snapshot has no function for (listed in the
 * group but unreadable) and groups it has no member listing for, instead of failing.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../core/errors.js';
import type { PciAddress } from '../core/pci-address.js';
import { snapshot } from '../../test/support/deviceplugin-snapshots.js';
import { groupDeviceNodes, neutralAllocation } from './allocation.js';

/** Two GPUs and their audio functions in one IOMMU group 7 (no ACS between them), with iommufd. */
const sharedGroup = snapshot(
  [
    { address: '0000:03:00.0', group: 7, numa: 0, gpu: { companions: ['0000:03:00.1'] }, vfioDevices: ['vfio0'] },
    { address: '0000:03:00.1', group: 7, numa: 0, deviceId: '1aef', vfioDevices: ['vfio1'] },
    { address: '0000:04:00.0', group: 7, numa: 0, gpu: { companions: ['0000:04:00.1'] }, vfioDevices: ['vfio2'] },
    { address: '0000:04:00.1', group: 7, numa: 0, deviceId: '1aef', vfioDevices: ['vfio3'] },
  ],
  { iommufd: true },
);

describe(neutralAllocation.name, () => {
  const offered = new Set(['0000:03:00.0', '0000:04:00.0']);

  it('refuses a request that lists no devices', () => {
    expect(() => neutralAllocation(sharedGroup, { addresses: [], offered, context: 'prepare claim c1' })).toThrow(
      new InvalidArgumentError('prepare claim c1: the request lists no devices'),
    );
  });

  it('lists a group shared by two requested GPUs once', () => {
    const a = neutralAllocation(sharedGroup, { addresses: ['0000:04:00.0', '0000:03:00.0'], offered, context: 'allocate' });
    expect(a).toEqual({
      addresses: ['0000:04:00.0', '0000:03:00.0'],
      groups: [7],
      deviceNodes: [
        '/dev/vfio/vfio',
        '/dev/vfio/7',
        '/dev/iommu',
        '/dev/vfio/devices/vfio0',
        '/dev/vfio/devices/vfio1',
        '/dev/vfio/devices/vfio2',
        '/dev/vfio/devices/vfio3',
      ],
      cdiDevices: ['handoff.dev/gpu=gpu-0000-04-00-0', 'handoff.dev/gpu=gpu-0000-03-00-0'],
    });
  });
});

describe(groupDeviceNodes.name, () => {
  it('skips a group member the snapshot could not read (no function for it) and still lists the others', () => {
    const host = snapshot(
      [
        { address: '0000:01:00.0', group: 12, gpu: {}, vfioDevices: ['vfio0'] },
        { address: '0000:01:00.1', group: 12, deviceId: '1aef', vfioDevices: ['vfio1'] },
      ],
      { iommufd: true },
    );
    const unreadable = { ...host, groups: [{ id: 12, members: ['0000:01:00.0', '0000:01:00.1', '0000:01:00.2'] as PciAddress[] }] };
    expect(groupDeviceNodes(unreadable, [12])).toEqual(['/dev/vfio/vfio', '/dev/vfio/12', '/dev/iommu', '/dev/vfio/devices/vfio0', '/dev/vfio/devices/vfio1']);
  });

  it('gives only the group node for a group the snapshot has no member listing for', () => {
    expect(groupDeviceNodes(sharedGroup, [7, 9])).toEqual([
      '/dev/vfio/vfio',
      '/dev/vfio/7',
      '/dev/vfio/9',
      '/dev/iommu',
      '/dev/vfio/devices/vfio0',
      '/dev/vfio/devices/vfio1',
      '/dev/vfio/devices/vfio2',
      '/dev/vfio/devices/vfio3',
    ]);
  });
});
