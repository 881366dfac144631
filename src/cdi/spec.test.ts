import { describe, expect, it } from 'vitest';
import { cdiSpecProblems } from '../../test/support/cdi-schema.js';
import { discoverHost } from '../host/discover.js';
import type { HostSnapshot } from '../host/model.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import type { HostProfile } from '../profiles/profile.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { buildCdiSpec, cdiDevices, CDI_SPEC_FILE, formatCdiSpec, isOurSpecFile } from './spec.js';

async function snapshotOf(name: string, patch: (p: HostProfile) => HostProfile = (p) => p): Promise<{ kernel: SimulatedKernel; snapshot: HostSnapshot }> {
  const kernel = new SimulatedKernel(patch(await loadBuiltinProfile(name)));
  return { kernel, snapshot: await discoverHost(kernel) };
}
const nodes = (rw: string[]): { path: string; permissions: string }[] => rw.map((path) => ({ path, permissions: 'rwm' }));

describe('CDI spec', () => {
  it('with iommufd: one device per vfio GPU with /dev/vfio/vfio, its group node, /dev/iommu and its vfio cdev; valid against the CDI v1.1.0 schema', async () => {
    const { snapshot } = await snapshotOf('server-aspeed-l40s-vfio');
    const spec = buildCdiSpec(cdiDevices(snapshot))!;
    expect(spec.kind).toBe('handoff.dev/gpu');
    expect(spec.cdiVersion).toBe('0.5.0');
    // The ASPEED BMC (boot VGA on ast, no group node) has no device: nothing a container could use.
    expect(spec.devices.map((d) => d.name)).toEqual(['gpu-0000-18-00-0', 'gpu-0000-3b-00-0', 'gpu-0000-9b-00-0', 'gpu-0000-bb-00-0']);
    expect(spec.devices[0]!.containerEdits.deviceNodes).toEqual(nodes(['/dev/vfio/vfio', '/dev/vfio/31', '/dev/iommu', '/dev/vfio/devices/vfio0']));
    expect(spec.devices[3]!.containerEdits.deviceNodes).toEqual(nodes(['/dev/vfio/vfio', '/dev/vfio/135', '/dev/iommu', '/dev/vfio/devices/vfio3']));
    expect(cdiSpecProblems(JSON.parse(formatCdiSpec(spec)))).toEqual([]);
  });

  it('without iommufd: the vfio container and the group node only; a group holding the GPU and its audio function lists the group once', async () => {
    const { snapshot } = await snapshotOf('server-aspeed-l40s-vfio', (p) => ({ ...p, iommufd: false }));
    const spec = buildCdiSpec(cdiDevices(snapshot))!;
    expect(spec.devices[1]).toEqual({ name: 'gpu-0000-3b-00-0', containerEdits: { deviceNodes: nodes(['/dev/vfio/vfio', '/dev/vfio/45']) } });
    expect(cdiSpecProblems(JSON.parse(formatCdiSpec(spec)))).toEqual([]);

    const ws = await snapshotOf('workstation-efifb', (p) => ({ ...p, loadedDrivers: [...(p.loadedDrivers ?? []), 'vfio-pci'], devices: p.devices.map((d) => (d.address === '0000:01:00.0' || d.address === '0000:01:00.1' ? { ...d, driver: 'vfio-pci' } : d)) }));
    const wsSpec = buildCdiSpec(cdiDevices(ws.snapshot))!;
    expect(wsSpec.devices).toEqual([{ name: 'gpu-0000-01-00-0', containerEdits: { deviceNodes: nodes(['/dev/vfio/vfio', '/dev/vfio/1']) } }]);
    expect(cdiSpecProblems(wsSpec)).toEqual([]);
  });

  it('leaves out GPUs not on vfio-pci and those not asked for; no GPU left means no spec (SPEC.md wants at least one device)', async () => {
    const { kernel } = await snapshotOf('server-aspeed-l40s-vfio');
    kernel.setDriverBinding('0000:9b:00.0', 'nvidia');
    const snapshot = await discoverHost(kernel);
    expect(cdiDevices(snapshot).map((d) => d.name)).toEqual(['gpu-0000-18-00-0', 'gpu-0000-3b-00-0', 'gpu-0000-bb-00-0']);
    expect(cdiDevices(snapshot, new Set(['0000:3b:00.0', '0000:9b:00.0'])).map((d) => d.name)).toEqual(['gpu-0000-3b-00-0']);
    // The group node stays while the audio function is on vfio-pci: still no device for a GPU on its native driver.
    const half = await snapshotOf('workstation-efifb', (p) => ({ ...p, loadedDrivers: [...(p.loadedDrivers ?? []), 'vfio-pci'], devices: p.devices.map((d) => (d.address === '0000:01:00.1' ? { ...d, driver: 'vfio-pci' } : d)) }));
    expect(half.snapshot.vfioGroupNodes).toContain(1);
    expect(cdiDevices(half.snapshot)).toEqual([]);
    const arm = await snapshotOf('arm64-domain-0004');
    expect(buildCdiSpec(cdiDevices(arm.snapshot))).toBeUndefined();
  });

  it('the schema check is not vacuous: it refuses specs that break the schema or SPEC.md', () => {
    const good = { cdiVersion: '0.5.0', kind: 'handoff.dev/gpu', devices: [{ name: 'gpu-0000-18-00-0', containerEdits: { deviceNodes: [{ path: '/dev/vfio/31' }] } }] };
    expect(cdiSpecProblems(good)).toEqual([]);
    expect(cdiSpecProblems({ ...good, devices: undefined })).not.toEqual([]);
    expect(cdiSpecProblems({ ...good, devices: [{ name: 'x' }] })).not.toEqual([]);
    expect(cdiSpecProblems({ ...good, devices: [{ name: 'gpu', containerEdits: { deviceNodes: [{ permissions: 'rw' }] } }] })).not.toEqual([]);
    expect(cdiSpecProblems({ ...good, devices: [] })).not.toEqual([]);
    expect(cdiSpecProblems({ ...good, kind: 'gpu' })).not.toEqual([]);
    expect(cdiSpecProblems({ ...good, devices: [{ ...good.devices[0], name: 'gpu=0' }] })).not.toEqual([]);
  });

  it.each([
    [CDI_SPEC_FILE, true],
    ['handoff.dev-gpu.yaml', true],
    ['.handoff.dev-gpu.json.1.k2j3.tmp', true],
    ['nvidia.com-gpu.yaml', false],
    ['.nvidia.com-gpu.json.1.x.tmp', false],
    ['handoff.dev-gpu.json.bak', false],
  ])('counts %s as ours: %s', (name, ours) => {
    expect(isOurSpecFile(name)).toBe(ours);
  });
});
