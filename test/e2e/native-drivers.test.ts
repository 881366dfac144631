/**
 * Scenario b: the boot GPU's functions are bound to their native drivers first (bochs-drm, which evicts efifb
 * and takes over the console, and snd_hda_intel). prepare moves the group to vfio-pci; release returns both
 * functions to those drivers and the console comes back on bochs-drm's framebuffer.
 */
import { beforeAll, expect, it } from 'vitest';

import { BOOT_AUDIO, BOOT_GPU, expectEveryBarMaps, fbconBound, handoffResult, inspectGpu, journalPresent } from './harness/expect-facts.js';
import { LAYOUTS } from './harness/qemu.js';
import { cliOf, driversOf, factsOf, groupNumber, vfioCheckOf, type GuestReport } from './harness/report.js';
import { kernelSuite, runScenario } from './harness/suite.js';

const NATIVE = { [BOOT_GPU]: 'bochs-drm', [BOOT_AUDIO]: 'snd_hda_intel' };

kernelSuite('b. boot GPU on native drivers', (series) => {
  let report: GuestReport;
  let group: string;

  beforeAll(async () => {
    report = (await runScenario(series, LAYOUTS.bootGpu, 'nativeDrivers')).report;
    group = groupNumber(factsOf(report, 'initial'), BOOT_GPU);
  });

  it('ran the whole scenario in the guest', () => {
    expect(report.error).toBeUndefined();
    expect(report.complete).toBe(true);
  });

  it('starts on bochs-drm + snd_hda_intel, with efifb already evicted by bochs-drm', () => {
    const initial = factsOf(report, 'initial');
    expect(driversOf(initial, [BOOT_GPU, BOOT_AUDIO])).toEqual(NATIVE);
    // The kernel unregisters efi-framebuffer.0 when a native DRM driver takes the boot GPU's aperture.
    expect(initial.platformFramebuffers['efi-framebuffer.0']).toBeUndefined();
    expect(initial.procFb.some((l) => l.includes('bochs'))).toBe(true);
    expect(fbconBound(initial)).toBe(true);
  });

  it('inspect says preparable (boot GPU permitted)', () => {
    const gpu = inspectGpu(cliOf(report, 'inspect').json, BOOT_GPU);
    expect(gpu.driver).toBe('bochs-drm');
    expect(gpu.verdict).toBe('preparable');
  });

  it('prepare moves both functions from their native drivers to vfio-pci', () => {
    const cli = cliOf(report, 'prepare');
    expect(cli.exitCode, cli.stderr).toBe(0);
    expect(handoffResult(cli.json, BOOT_GPU).outcome).toBe('prepared');
    const after = factsOf(report, 'prepare');
    expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO])).toEqual({ [BOOT_GPU]: 'vfio-pci', [BOOT_AUDIO]: 'vfio-pci' });
    expect(after.devVfio).toContain(group);
    expect(after.procFb).toEqual([]);
    expect(fbconBound(after)).toBe(false);
    expect(journalPresent(after)).toBe(false);
  });

  it('hands a viable group to a VMM, every BAR of both functions read and mapped', () => {
    expectEveryBarMaps(vfioCheckOf(report, 'vfio-check'), [BOOT_GPU, BOOT_AUDIO]);
  });

  it('release returns both functions to their native drivers and the console comes back', () => {
    const cli = cliOf(report, 'release');
    expect(cli.exitCode, cli.stderr).toBe(0);
    const after = factsOf(report, 'settled');
    expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO])).toEqual(NATIVE);
    expect(after.pci[BOOT_GPU]?.driverOverride).toBeNull();
    expect(after.pci[BOOT_AUDIO]?.driverOverride).toBeNull();
    expect(after.devVfio).not.toContain(group);
    expect(after.procFb.some((l) => l.includes('bochs'))).toBe(true);
    expect(fbconBound(after)).toBe(true);
    expect(journalPresent(after)).toBe(false);
  });
});
