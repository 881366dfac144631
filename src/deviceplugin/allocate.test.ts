import { describe, expect, it } from 'vitest';
import { BlockedError, InvalidArgumentError } from '../core/errors.js';
import { twoGpuHost } from '../../test/support/deviceplugin-snapshots.js';
import { buildContainerAllocateResponse } from './allocate.js';
import { computeDeviceSets } from './devices.js';

const R = 'nvidia.com/GA102_GEFORCE_RTX_3090';
const mrw = (p: string): object => ({ container_path: p, host_path: p, permissions: 'mrw' });

describe(buildContainerAllocateResponse.name, () => {
  const host = twoGpuHost();
  const advertised = computeDeviceSets(host, () => R).get(R)!;

  it('gives the group nodes of every requested GPU and only the GPU addresses in request order', () => {
    const resp = buildContainerAllocateResponse(host, R, advertised, ['0000:41:00.0', '0000:01:00.0']);
    expect(resp.envs).toEqual({ PCI_RESOURCE_NVIDIA_COM_GA102_GEFORCE_RTX_3090: '0000:41:00.0,0000:01:00.0' });
    expect(resp.devices).toEqual([mrw('/dev/vfio/vfio'), mrw('/dev/vfio/30'), mrw('/dev/vfio/12')]);
    expect(resp.mounts).toEqual([]);
    expect(resp.cdi_devices).toEqual([]);
  });

  it('adds /dev/iommu and the vfio cdevs of the whole group with iommufd', () => {
    const fd = twoGpuHost({ iommufd: true });
    const resp = buildContainerAllocateResponse(fd, R, advertised, ['0000:01:00.0']);
    expect(resp.devices).toEqual([
      mrw('/dev/vfio/vfio'),
      mrw('/dev/vfio/12'),
      mrw('/dev/iommu'),
      mrw('/dev/vfio/devices/vfio0'),
      mrw('/dev/vfio/devices/vfio1'),
    ]);
    expect(resp.envs).toEqual({ PCI_RESOURCE_NVIDIA_COM_GA102_GEFORCE_RTX_3090: '0000:01:00.0' });
  });

  it.each([
    [['0000:01:00.1'], 'an audio sibling'],
    [['0000:99:00.0'], 'an unknown address'],
    [['12'], 'a group number'],
    [['0000:01:00.0', '0000:01:00.0'], 'a duplicate'],
    [[], 'nothing'],
  ])('rejects %j (%s) as INVALID_ARGUMENT', (ids) => {
    expect(() => buildContainerAllocateResponse(host, R, advertised, ids)).toThrow(InvalidArgumentError);
  });

  it('rejects a device that is no longer ready, by snapshot or by fresh check', () => {
    const gone = { ...host, vfioGroupNodes: [30] };
    const err = (() => {
      try {
        buildContainerAllocateResponse(gone, R, advertised, ['0000:01:00.0']);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(BlockedError);
    expect((err as BlockedError).reasons.map((r) => r.code)).toEqual(['NO_VFIO_GROUP_NODE']);
    expect(() => buildContainerAllocateResponse(host, R, advertised, ['0000:41:00.0'], new Map([['0000:41:00.0', 'NOT_ON_VFIO_PCI' as const]]))).toThrow(
      BlockedError,
    );
  });
});
