/**
 * The test bed itself: a stock Debian kernel boots under OVMF with the emulated IOMMU, the guest sees the
 * boot VGA under efifb in a two-function IOMMU group, and Node + the built CLI run inside it.
 */
import { beforeAll, expect, it } from 'vitest';

import { LAYOUTS } from './harness/qemu.js';
import { cliOf, factsOf, groupMembers, type GuestReport } from './harness/report.js';
import { kernelSuite, runScenario } from './harness/suite.js';

kernelSuite('kernel e2e smoke', (series) => {
  let report: GuestReport;
  let release: string;

  beforeAll(async () => {
    const run = await runScenario(series, LAYOUTS.bootGpu, 'smoke', undefined, { requireCli: false });
    report = run.report;
    release = run.kernel.release;
  });

  it('boots the requested kernel and runs Node inside it', () => {
    expect(report.complete).toBe(true);
    expect(report.kernelRelease).toBe(release);
    expect(report.nodeVersion).toBe(process.version);
  });

  it('gives the boot VGA efifb and puts VGA + HDA in one IOMMU group', () => {
    const facts = factsOf(report, 'initial');
    expect(facts.pci['0000:00:02.0']).toMatchObject({ class: '0x030000', bootVga: '1', driver: null });
    expect(facts.pci['0000:00:02.1']).toMatchObject({ class: '0x040300', driver: null });
    expect(groupMembers(facts, '0000:00:02.0')).toEqual(['0000:00:02.0', '0000:00:02.1']);
    expect(facts.platformFramebuffers).toEqual({ 'efi-framebuffer.0': 'efi-framebuffer' });
    expect(facts.procFb).toEqual(['0 EFI VGA']);
    expect(facts.iomem.some((l) => l.endsWith(': efifb'))).toBe(true);
    expect(facts.vtconsoles.find((v) => v.name.includes('frame buffer device'))?.bind).toBe('1');
  });

  it('runs the built CLI', () => {
    const version = cliOf(report, 'version');
    expect(version.exitCode).toBe(0);
    expect(version.stdout.trim()).toMatch(/\d+\.\d+\.\d+/);
  });
});
