import type * as grpc from '@grpc/grpc-js';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CDI_SPEC_FILE } from '../../../src/cdi/spec.js';
import { CdiSpecWriter } from '../../../src/cdi/writer.js';
import { silentLogger } from '../../../src/core/logger.js';
import { NodeSpecDir } from '../../../src/state/spec-dir.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { cdiSpecProblems } from '../../support/cdi-schema.js';
import { GPU0, GPU1, RTX, makeRig, twoRtxProfile } from './harness.js';
import type { Rig } from './harness.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()));
});

async function rigWith(kernel: SimulatedKernel, cdi: boolean): Promise<{ rig: Rig; cdiDir: string }> {
  const cdiDir = await mkdtemp(join(tmpdir(), 'vh-cdi-'));
  const rig = await makeRig(kernel);
  cleanups.push(async () => {
    await rig.cleanup();
    await rm(cdiDir, { recursive: true, force: true });
  });
  await rig.start({ cdi: cdi ? new CdiSpecWriter({ dir: new NodeSpecDir({ dir: cdiDir }), logger: silentLogger }) : undefined });
  await rig.kubelet.waitFor(() => rig.kubelet.healthy(RTX).length === 2, 5000, 'first ListAndWatch');
  return { rig, cdiDir };
}

describe('device plugin with CDI (simulated kernel, kubelet emulator)', () => {
  it('off (default): Allocate answers device nodes and no CDI devices, and no spec is written', async () => {
    const { rig, cdiDir } = await rigWith(new SimulatedKernel(twoRtxProfile({ iommufd: true })), false);
    const c = (await rig.kubelet.allocate(RTX, [[GPU0]])).container_responses[0]!;
    expect(c.cdi_devices).toEqual([]);
    expect(c.devices.map((d) => d.host_path)).toEqual(['/dev/vfio/vfio', '/dev/vfio/12', '/dev/iommu', '/dev/vfio/devices/vfio0', '/dev/vfio/devices/vfio1']);
    expect(await readFile(join(cdiDir, CDI_SPEC_FILE), 'utf8').catch((e: NodeJS.ErrnoException) => e.code)).toBe('ENOENT');
  });

  it('on: the spec names both GPUs before kubelet sees them; Allocate answers their CDI IDs, the PCI_RESOURCE env and no device nodes', async () => {
    const { rig, cdiDir } = await rigWith(new SimulatedKernel(twoRtxProfile({ iommufd: true })), true);
    const spec = JSON.parse(await readFile(join(cdiDir, CDI_SPEC_FILE), 'utf8')) as { devices: { name: string; containerEdits: { deviceNodes: { path: string }[] } }[] };
    expect(cdiSpecProblems(spec)).toEqual([]);
    expect(spec.devices.map((d) => [d.name, d.containerEdits.deviceNodes.map((n) => n.path)])).toEqual([
      ['gpu-0000-01-00-0', ['/dev/vfio/vfio', '/dev/vfio/12', '/dev/iommu', '/dev/vfio/devices/vfio0', '/dev/vfio/devices/vfio1']],
      ['gpu-0000-41-00-0', ['/dev/vfio/vfio', '/dev/vfio/30', '/dev/iommu', '/dev/vfio/devices/vfio2', '/dev/vfio/devices/vfio3']],
    ]);
    const c = (await rig.kubelet.allocate(RTX, [[GPU1, GPU0]])).container_responses[0]!;
    expect(c.cdi_devices).toEqual([{ name: 'handoff.dev/gpu=gpu-0000-41-00-0' }, { name: 'handoff.dev/gpu=gpu-0000-01-00-0' }]);
    expect(c.envs).toEqual({ PCI_RESOURCE_NVIDIA_COM_GA102_GEFORCE_RTX_3090: `${GPU1},${GPU0}` });
    expect(c.devices).toEqual([]);
  });

  it('on: a spec deleted under it is back before Allocate answers; a spec it cannot write fails the Allocate', async () => {
    const { rig, cdiDir } = await rigWith(new SimulatedKernel(twoRtxProfile()), true);
    const path = join(cdiDir, CDI_SPEC_FILE);
    await rm(path);
    await rig.kubelet.allocate(RTX, [[GPU0]]);
    expect(cdiSpecProblems(JSON.parse(await readFile(path, 'utf8')))).toEqual([]);
    // A non-empty directory on the spec's name: rename(2) fails, so the runtime could not resolve the ID.
    await rm(path);
    await mkdir(path);
    await writeFile(join(path, 'x'), 'x');
    const err = await rig.kubelet.allocate(RTX, [[GPU0]]).then(() => undefined, (e: grpc.ServiceError) => e);
    expect(err?.code).toBeDefined();
    expect(rig.recorder.events.allocate.at(-1)).toEqual([RTX, false]);
  });

  it('on: a GPU that leaves vfio-pci leaves the spec at the next scan', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    const { rig, cdiDir } = await rigWith(kernel, true);
    kernel.setDriverBinding(GPU1, 'nvidia');
    await rig.kubelet.waitFor(() => rig.kubelet.unhealthy(RTX).includes(GPU1), 5000, 'GPU1 unhealthy');
    const spec = JSON.parse(await readFile(join(cdiDir, CDI_SPEC_FILE), 'utf8')) as { devices: { name: string }[] };
    expect(spec.devices.map((d) => d.name)).toEqual(['gpu-0000-01-00-0']);
  });
});
