/**
 * Scenario c: a second std VGA (boot_vga=0, own group) beside the boot VGA under efifb. Preparing the
 * secondary must not touch the boot GPU's functions. What happens to the boot console depends on the kernel:
 * Debian's 6.1 removes the firmware framebuffer on any VGA-class vfio-pci bind (inspect warns with
 * SYSFB_REMOVED_BY_ANY_VGA), 6.12 only on the boot VGA (no warning, efifb survives).
 */
import { beforeAll, expect, it } from 'vitest';

import { BOOT_AUDIO, BOOT_GPU, codes, expectEveryBarMaps, fbconBound, handoffResult, inspectGpu, journalPresent } from './harness/expect-facts.js';
import { LAYOUTS } from './harness/qemu.js';
import { cliOf, driversOf, factsOf, groupMembers, groupNumber, vfioCheckOf, type GuestReport } from './harness/report.js';
import { kernelSuite, runScenario } from './harness/suite.js';

const SECOND = '0000:00:05.0';

kernelSuite('c. secondary VGA beside the boot VGA', (series) => {
  let report: GuestReport;
  let group: string;
  /** The prepare that moved the GPU: the plain one, or the retry with --allow-boot-gpu when the CLI asked for it. */
  let prepareStep: string;

  beforeAll(async () => {
    report = (await runScenario(series, LAYOUTS.secondaryVga, 'secondaryVga')).report;
    group = groupNumber(factsOf(report, 'initial'), SECOND);
    prepareStep = report.steps.some((s) => s.name === 'prepare-allowed') ? 'prepare-allowed' : 'prepare';
  });

  it('ran the whole scenario in the guest', () => {
    expect(report.error).toBeUndefined();
    expect(report.complete).toBe(true);
  });

  it('has the secondary VGA alone in its group, not the boot VGA', () => {
    const initial = factsOf(report, 'initial');
    expect(initial.pci[SECOND]?.bootVga).toBe('0');
    expect(initial.pci[BOOT_GPU]?.bootVga).toBe('1');
    expect(groupMembers(initial, SECOND)).toEqual([SECOND]);
    expect(initial.platformFramebuffers['efi-framebuffer.0']).toBe('efi-framebuffer');
  });

  it(`inspect ${series === '6.1' ? 'warns' : 'does not warn'} that binding any VGA removes the boot framebuffer`, () => {
    const gpu = inspectGpu(cliOf(report, 'inspect').json, SECOND);
    expect(gpu.bootGpu).toBe(false);
    expect(gpu.framebuffers).toEqual([]);
    if (series === '6.1') expect(codes(gpu.warnings)).toContain('SYSFB_REMOVED_BY_ANY_VGA');
    else expect(codes(gpu.warnings)).not.toContain('SYSFB_REMOVED_BY_ANY_VGA');
  });

  it('6.12: prepare of the secondary needs no boot-GPU permission', () => {
    if (series !== '6.1') expect(cliOf(report, 'prepare').exitCode).toBe(0);
    else expect([0, 4]).toContain(cliOf(report, 'prepare').exitCode);
  });

  it('prepare moves the secondary to vfio-pci and leaves the boot GPU functions alone', () => {
    const cli = cliOf(report, prepareStep);
    expect(cli.exitCode, cli.stderr).toBe(0);
    expect(handoffResult(cli.json, SECOND).outcome).toBe('prepared');
    const before = factsOf(report, 'initial');
    const after = factsOf(report, prepareStep);
    expect(after.pci[SECOND]?.driver).toBe('vfio-pci');
    expect(after.devVfio).toContain(group);
    expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO])).toEqual(driversOf(before, [BOOT_GPU, BOOT_AUDIO]));
    expect(after.pci[BOOT_GPU]?.driverOverride).toBeNull();
    expect(journalPresent(after)).toBe(false);
    expectEveryBarMaps(vfioCheckOf(report, 'vfio-check'), [SECOND]);
  });

  it(`the kernel ${series === '6.1' ? 'removes' : 'keeps'} the boot GPU's efifb and console`, () => {
    const after = factsOf(report, prepareStep);
    if (series === '6.1') {
      expect(after.platformFramebuffers['efi-framebuffer.0']).toBeUndefined();
      expect(after.procFb).toEqual([]);
      expect(fbconBound(after)).toBe(false);
    } else {
      expect(after.platformFramebuffers['efi-framebuffer.0']).toBe('efi-framebuffer');
      expect(after.procFb).toEqual(['0 EFI VGA']);
      expect(fbconBound(after)).toBe(true);
    }
  });

  it('release gives the secondary back', () => {
    const cli = cliOf(report, 'release');
    expect(cli.exitCode, cli.stderr).toBe(0);
    const after = factsOf(report, 'release');
    expect(after.pci[SECOND]?.driver).toBeNull();
    expect(after.pci[SECOND]?.driverOverride).toBeNull();
    expect(after.devVfio).not.toContain(group);
    expect(journalPresent(after)).toBe(false);
  });
});
