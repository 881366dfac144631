/**
 * Scenario h (issue 13): the DRA kubelet plugin (`agent --front-end dra`, claims from files: no API server in the
 * guest) on a real kernel. The guest drives it over its sockets as kubelet 1.34 does (guest/dra-client.mjs:
 * GetInfo, the service kubelet would choose, NodePrepareResources / NodeUnprepareResources with {namespace, uid,
 * name}). The boot GPU starts on its native drivers (bochs-drm + snd_hda_intel, one IOMMU group).
 */
import { beforeAll, expect, it } from 'vitest';

import { BOOT_AUDIO, BOOT_GPU, expectEveryBarMaps, fbconBound } from './harness/expect-facts.js';
import { LAYOUTS } from './harness/qemu.js';
import { driversOf, factsOf, groupNumber, step, vfioCheckOf, type GuestReport } from './harness/report.js';
import { kernelSuite, runScenario } from './harness/suite.js';

const NATIVE = { [BOOT_GPU]: 'bochs-drm', [BOOT_AUDIO]: 'snd_hda_intel' };
const VFIO = { [BOOT_GPU]: 'vfio-pci', [BOOT_AUDIO]: 'vfio-pci' };
const DEVICE = `gpu-${BOOT_GPU.replace(/[:.]/g, '-')}`;
const PERMITTED_UID = '22222222-2222-2222-2222-222222222222';
const NOT_PERMITTED_UID = '11111111-1111-1111-1111-111111111111';

interface ClientData {
  status: number;
  error?: string;
  info?: { type: string; name: string; endpoint: string; supported_versions: string[] };
  service?: string;
  response?: { claims: Record<string, { error?: string; devices?: { request_names: string[]; pool_name: string; device_name: string; cdi_device_ids: string[] }[] }> };
}
const client = (report: GuestReport, name: string): ClientData => step(report, name).data as ClientData;

kernelSuite('h. DRA prepare/unprepare over the kubelet gRPC', (series) => {
  let report: GuestReport;
  let group: string;

  beforeAll(async () => {
    report = (await runScenario(series, LAYOUTS.bootGpu, 'draGrpc')).report;
    group = groupNumber(factsOf(report, 'initial'), BOOT_GPU);
  });

  it('ran the whole scenario in the guest', () => {
    expect(report.error).toBeUndefined();
    expect(report.complete).toBe(true);
  });

  it('registers as kubelet expects: type DRAPlugin, driver gpu.handoff.dev, kubelet picks v1.DRAPlugin', () => {
    const d = client(report, 'dra-prepare-not-allowed');
    expect(d.status, JSON.stringify(d)).toBe(0);
    expect(d.info?.type).toBe('DRAPlugin');
    expect(d.info?.name).toBe('gpu.handoff.dev');
    expect(d.info?.endpoint).toBe('/var/lib/kubelet/plugins/gpu.handoff.dev/dra.sock');
    expect(d.service).toBe('v1.DRAPlugin');
  });

  it('refuses the boot GPU for a claim without allowBootGpu in its config, and moves nothing', () => {
    const d = client(report, 'dra-prepare-not-allowed');
    expect(d.status, JSON.stringify(d)).toBe(0);
    expect(d.response?.claims[NOT_PERMITTED_UID]?.error).toMatch(/boot/i);
    expect(d.response?.claims[NOT_PERMITTED_UID]?.devices ?? []).toEqual([]);
    const after = factsOf(report, 'dra-prepare-not-allowed');
    expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO])).toEqual(NATIVE);
    expect(after.devVfio).not.toContain(group);
    expect(fbconBound(after)).toBe(true);
  });

  it('NodePrepareResources moves the whole group to vfio-pci and answers the device with its CDI ID', () => {
    const d = client(report, 'dra-prepare');
    expect(d.status, JSON.stringify(d)).toBe(0);
    const res = d.response?.claims[PERMITTED_UID];
    expect(res?.error ?? '').toBe('');
    expect(res?.devices).toEqual([{ request_names: ['gpu'], pool_name: 'qemu-guest', device_name: DEVICE, cdi_device_ids: expect.arrayContaining([`handoff.dev/gpu=${DEVICE}`]) as unknown }]);
    const after = factsOf(report, 'dra-prepare');
    expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO])).toEqual(VFIO);
    expect(after.devVfio).toContain(group);
    expect(fbconBound(after)).toBe(false);
  });

  it('hands a viable group to a VMM after prepare, every BAR of both functions read and mapped', () => {
    expectEveryBarMaps(vfioCheckOf(report, 'vfio-check'), [BOOT_GPU, BOOT_AUDIO]);
  });

  it('writes the CDI spec with the group node and the device-metadata file with pciBusID', () => {
    const files = step(report, 'dra-files').data as { cdi: Record<string, string>; plugin: Record<string, string> };
    const spec = JSON.parse(files.cdi['handoff.dev-gpu.json'] ?? '{}') as { kind?: string; devices?: { name: string; containerEdits?: { deviceNodes?: { path: string }[] } }[] };
    expect(spec.kind).toBe('handoff.dev/gpu');
    const nodes = spec.devices?.find((x) => x.name === DEVICE)?.containerEdits?.deviceNodes?.map((n) => n.path) ?? [];
    expect(nodes).toEqual(expect.arrayContaining(['/dev/vfio/vfio', `/dev/vfio/${group}`]));
    const metadata = Object.entries(files.plugin).filter(([p]) => p.endsWith('-metadata.json'));
    expect(metadata.length, Object.keys(files.plugin).join(', ')).toBe(1);
    expect(metadata[0]![1]).toContain(`"resource.kubernetes.io/pciBusID":{"string":"${BOOT_GPU}"}`);
  });

  it('a repeated NodePrepareResources answers the same devices and changes nothing', () => {
    const d = client(report, 'dra-prepare-again');
    expect(d.response?.claims[PERMITTED_UID]).toEqual(client(report, 'dra-prepare').response?.claims[PERMITTED_UID]);
    expect(driversOf(factsOf(report, 'dra-prepare-again'), [BOOT_GPU, BOOT_AUDIO])).toEqual(VFIO);
  });

  it('NodeUnprepareResources gives both functions back to their native drivers; the console returns', () => {
    const d = client(report, 'dra-unprepare');
    expect(d.status, JSON.stringify(d)).toBe(0);
    expect(d.response?.claims[PERMITTED_UID]?.error ?? '').toBe('');
    const after = factsOf(report, 'settled');
    expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO])).toEqual(NATIVE);
    expect(after.pci[BOOT_GPU]?.driverOverride).toBeNull();
    expect(after.devVfio).not.toContain(group);
    expect(fbconBound(after)).toBe(true);
  });

  it('a repeated NodeUnprepareResources (batched with a claim never prepared) succeeds for both without touching the GPU', () => {
    const d = client(report, 'dra-unprepare-again');
    expect(d.status, JSON.stringify(d)).toBe(0);
    expect(Object.keys(d.response?.claims ?? {}).sort()).toEqual([NOT_PERMITTED_UID, PERMITTED_UID].sort());
    for (const uid of [PERMITTED_UID, NOT_PERMITTED_UID]) expect(d.response?.claims[uid]?.error ?? '').toBe('');
    expect(driversOf(factsOf(report, 'dra-unprepare-again'), [BOOT_GPU, BOOT_AUDIO])).toEqual(NATIVE);
  });
});
