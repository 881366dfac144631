import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { NodeHost } from '../../../src/sysfs/node-host.js';
import { makeRig } from './harness.js';
import type { Rig } from './harness.js';

const L40S = 'nvidia.com/AD102GL_L40S';
const GPUS = ['0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0'];

describe('device plugin over a materialised host tree (NodeHost on real files)', () => {
  let rig: Rig | undefined;
  let hostDir: string | undefined;
  afterEach(async () => {
    await rig?.cleanup();
    if (hostDir) await rm(hostDir, { recursive: true, force: true });
  });

  it('advertises the vfio-bound L40S GPUs, allocates with iommufd specs, and sees a vanished group node', async () => {
    hostDir = await mkdtemp(join(tmpdir(), 'vh-host-'));
    await materialiseProfile(await loadBuiltinProfile('server-aspeed-l40s-vfio'), hostDir);
    rig = await makeRig(new NodeHost({ root: hostDir }));
    await rig.start();
    const k = rig.kubelet;
    await k.waitFor(() => k.healthy(L40S).length === 4, 5000, 'four L40S');
    // The ASPEED boot VGA is on ast: never advertised.
    expect(k.resourceNames()).toEqual([L40S]);
    expect(k.resource(L40S)!.devices.map((d) => [d.ID, d.topology?.nodes[0]?.ID])).toEqual([
      [GPUS[0], 0],
      [GPUS[1], 0],
      [GPUS[2], 1],
      [GPUS[3], 1],
    ]);

    const resp = await k.allocate(L40S, [[GPUS[2]!]]);
    const c = resp.container_responses[0]!;
    expect(c.envs).toEqual({ PCI_RESOURCE_NVIDIA_COM_AD102GL_L40S: GPUS[2] });
    expect(c.devices.map((d) => d.host_path).slice(0, 3)).toEqual(['/dev/vfio/vfio', '/dev/vfio/121', '/dev/iommu']);
    expect(c.devices.map((d) => d.host_path).slice(3)).toEqual([expect.stringMatching(/^\/dev\/vfio\/devices\/vfio[0-9]+$/)]);

    await unlink(join(hostDir, 'dev/vfio/45'));
    await k.waitFor(() => k.unhealthy(L40S).includes(GPUS[1]!), 3000, 'GPU1 unhealthy after /dev/vfio/45 vanished');
    expect(k.healthy(L40S)).toEqual([GPUS[0], GPUS[2], GPUS[3]]);
  });
});
