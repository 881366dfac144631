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

describe(`${buildContainerAllocateResponse.name}: refusals say what is wrong`, () => {
  const host = twoGpuHost();
  const advertised = computeDeviceSets(host, () => R).get(R)!;

  it('an empty request, a duplicate, an id not advertised under this resource', () => {
    expect(() => buildContainerAllocateResponse(host, R, advertised, [])).toThrow(
      new InvalidArgumentError(`allocate for ${R}: the container request lists no devices`),
    );
    expect(() => buildContainerAllocateResponse(host, R, advertised, ['0000:01:00.0', '0000:01:00.0'])).toThrow(
      new InvalidArgumentError(`allocate for ${R}: device 0000:01:00.0 is requested twice`),
    );
    // A real GPU of the host, but advertised under another resource (only the first GPU is advertised here).
    const onlyFirst = advertised.filter((d) => d.id === '0000:01:00.0');
    expect(() => buildContainerAllocateResponse(host, R, onlyFirst, ['0000:41:00.0'])).toThrow(
      new InvalidArgumentError(`allocate for ${R}: unknown device "0000:41:00.0" (not a device this plugin advertises)`),
    );
    // Advertised, but gone from the host (hot-removed since the last ListAndWatch).
    const gone = { ...host, gpus: host.gpus.filter((g) => g.fn.address !== '0000:41:00.0') };
    expect(() => buildContainerAllocateResponse(gone, R, advertised, ['0000:41:00.0'])).toThrow(InvalidArgumentError);
  });

  it('names every device that is no longer ready, with its reason code', () => {
    const fresh = new Map([
      ['0000:01:00.0', 'NOT_ON_VFIO_PCI' as const],
      ['0000:41:00.0', 'NO_VFIO_GROUP_NODE' as const],
    ]);
    let err: unknown;
    try {
      buildContainerAllocateResponse(host, R, advertised, ['0000:01:00.0', '0000:41:00.0'], fresh);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BlockedError);
    expect((err as BlockedError).message).toBe(
      `allocate for ${R}: device 0000:01:00.0 is no longer ready for passthrough (NOT_ON_VFIO_PCI); device 0000:41:00.0 is no longer ready for passthrough (NO_VFIO_GROUP_NODE)`,
    );
    expect((err as BlockedError).reasons.map((r) => r.code)).toEqual(['NOT_ON_VFIO_PCI', 'NO_VFIO_GROUP_NODE']);
  });
});
