/**
 * Scenario d: a GPU behind a PCIe-to-PCI bridge shares its IOMMU group with the bridge and a NIC (bound to
 * e1000) in another slot. prepare must refuse with exit 4 and write nothing: no driver link, no
 * driver_override, no console change, no journal.
 */
import { beforeAll, expect, it } from 'vitest';

import { bindingState, codes, consoleState, inspectGpu, journalPresent } from './harness/expect-facts.js';
import { LAYOUTS } from './harness/qemu.js';
import { cliOf, factsOf, groupMembers, groupNumber, step, vfioCheckOf, type GuestReport } from './harness/report.js';
import { kernelSuite, runScenario } from './harness/suite.js';

const BRIDGE = '0000:00:07.0';
const GPU = '0000:01:01.0';
const NIC = '0000:01:02.0';

kernelSuite('d. GPU sharing its group with a foreign device', (series) => {
  let report: GuestReport;

  beforeAll(async () => {
    report = (await runScenario(series, LAYOUTS.foreignDevice, 'foreignDevice')).report;
  });

  it('ran the whole scenario in the guest', () => {
    expect(report.error).toBeUndefined();
    expect(report.complete).toBe(true);
  });

  it('really has the bridge, the GPU and the NIC (on e1000) in one group', () => {
    const initial = factsOf(report, 'initial');
    expect((step(report, 'initial').data as { gpu: string }).gpu).toBe(GPU);
    expect(groupMembers(initial, GPU)).toEqual([BRIDGE, GPU, NIC]);
    expect(initial.pci[NIC]?.driver).toBe('e1000');
  });

  it('inspect blocks the GPU with FOREIGN_DEVICE and names the NIC foreign', () => {
    const gpu = inspectGpu(cliOf(report, 'inspect').json, GPU);
    expect(gpu.verdict).toBe('blocked');
    expect(codes(gpu.reasons)).toContain('FOREIGN_DEVICE');
    const roles = Object.fromEntries(gpu.functions.map((f) => [f.address, f.role]));
    expect(roles[NIC]).toBe('foreign');
    expect(roles[GPU]).toBe('gpu');
  });

  it.each(['prepare', 'prepare-allowed', 'prepare-by-id'])('%s exits 4 and writes nothing', (name) => {
    const cli = cliOf(report, name);
    expect(cli.exitCode, cli.stdout + cli.stderr).toBe(4);
    const before = factsOf(report, 'initial');
    const after = factsOf(report, name);
    expect(bindingState(after)).toEqual(bindingState(before));
    expect(consoleState(after)).toEqual(consoleState(before));
    expect(after.devVfio).toEqual(before.devVfio);
    expect(journalPresent(after)).toBe(false);
  });

  it('leaves a VMM nothing to open: /dev/vfio/<group> does not exist', () => {
    const group = groupNumber(factsOf(report, 'initial'), GPU);
    expect(factsOf(report, 'vfio-check').devVfio).not.toContain(group);
    const check = vfioCheckOf(report, 'vfio-check');
    expect(check.ok).toBe(false);
    expect(check.group).toBe(group);
    expect(check.error).toMatch(/Errno 2\]/); // ENOENT on /dev/vfio/<group>
  });
});
