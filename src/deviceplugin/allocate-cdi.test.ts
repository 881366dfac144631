/**
 * Allocate with CDI on: the GPUs go to the runtime as CDI device IDs (`handoff.dev/gpu=gpu-…`, request
 * order) and no DeviceSpec is sent besides, so nothing is injected twice; the env is unchanged.
 */
import { describe, expect, it } from 'vitest';
import { twoGpuHost } from '../../test/support/deviceplugin-snapshots.js';
import { buildContainerAllocateResponse } from './allocate.js';
import { computeDeviceSets } from './devices.js';

const R = 'nvidia.com/GA102_GEFORCE_RTX_3090';

describe(`${buildContainerAllocateResponse.name} with CDI`, () => {
  it('names the GPUs as CDI devices in request order and sends no device nodes', () => {
    const host = twoGpuHost({ iommufd: true });
    const advertised = computeDeviceSets(host, () => R).get(R)!;
    const resp = buildContainerAllocateResponse(host, R, advertised, ['0000:41:00.0', '0000:01:00.0'], new Map(), { cdi: true });
    expect(resp).toEqual({
      envs: { PCI_RESOURCE_NVIDIA_COM_GA102_GEFORCE_RTX_3090: '0000:41:00.0,0000:01:00.0' },
      mounts: [],
      devices: [],
      annotations: {},
      cdi_devices: [{ name: 'handoff.dev/gpu=gpu-0000-41-00-0' }, { name: 'handoff.dev/gpu=gpu-0000-01-00-0' }],
    });
  });
});
