/**
 * Scenario a: the boot VGA (efifb in its BAR0, fbcon on efifb) and its HDA function share one IOMMU group and
 * have no native driver. inspect must demand the boot-GPU permission; prepare with it moves both functions to
 * vfio-pci, releases console and framebuffer, and a VMM-style VFIO check succeeds; release gives them back.
 */
import { beforeAll, describe, expect, it } from 'vitest';

import { BOOT_AUDIO, BOOT_GPU, bindingState, codes, consoleState, expectEveryBarMaps, fbconBound, handoffResult, inspectGpu, journalPresent } from './harness/expect-facts.js';
import { LAYOUTS } from './harness/qemu.js';
import { cliOf, driversOf, factsOf, groupMembers, groupNumber, vfioCheckOf, type GuestReport } from './harness/report.js';
import { kernelSuite, runScenario } from './harness/suite.js';

kernelSuite('a. boot GPU under efifb', (series) => {
  let report: GuestReport;
  let release: string;
  let group: string;

  beforeAll(async () => {
    const run = await runScenario(series, LAYOUTS.bootGpu, 'bootGpu');
    report = run.report;
    release = run.kernel.release;
    group = groupNumber(factsOf(report, 'initial'), BOOT_GPU);
  });

  it('booted the requested stock kernel and ran the whole scenario with the host Node', () => {
    expect(report.kernelRelease).toBe(release);
    expect(report.nodeVersion).toBe(process.version);
    expect(report.error).toBeUndefined();
    expect(report.complete).toBe(true);
  });

  it('starts from the boot VGA under efifb with the audio function in its group', () => {
    const initial = factsOf(report, 'initial');
    expect(groupMembers(initial, BOOT_GPU)).toEqual([BOOT_GPU, BOOT_AUDIO]);
    expect(initial.pci[BOOT_GPU]?.bootVga).toBe('1');
    expect(initial.platformFramebuffers).toEqual({ 'efi-framebuffer.0': 'efi-framebuffer' });
    expect(initial.procFb).toEqual(['0 EFI VGA']);
    expect(initial.iomem.some((l) => l.endsWith(': efifb'))).toBe(true);
    expect(fbconBound(initial)).toBe(true);
  });

  describe('inspect', () => {
    it('blocks the boot GPU without the permission (BOOT_GPU_NOT_PERMITTED)', () => {
      const cli = cliOf(report, 'inspect');
      expect(cli.exitCode).toBe(0);
      const gpu = inspectGpu(cli.json, BOOT_GPU);
      expect(gpu.bootGpu).toBe(true);
      expect(gpu.verdict).toBe('blocked');
      expect(codes(gpu.reasons)).toContain('BOOT_GPU_NOT_PERMITTED');
      expect(String(gpu.iommuGroup)).toBe(group);
      expect(gpu.framebuffers).toContain('efi-framebuffer.0');
      expect(Object.fromEntries(gpu.functions.map((f) => [f.address, f.role]))).toEqual({ [BOOT_GPU]: 'gpu', [BOOT_AUDIO]: 'companion' });
    });

    it('says preparable with --allow-boot-gpu and warns that the console goes dark for good', () => {
      const gpu = inspectGpu(cliOf(report, 'inspect-allowed').json, BOOT_GPU);
      expect(gpu.verdict).toBe('preparable');
      expect(gpu.reasons).toEqual([]);
      expect(codes(gpu.warnings)).toEqual(expect.arrayContaining(['CONSOLE_WILL_GO_DARK', 'FRAMEBUFFER_NOT_RESTORABLE']));
    });
  });

  it('refuses prepare without --allow-boot-gpu (exit 4) and writes nothing', () => {
    const cli = cliOf(report, 'prepare-not-allowed');
    expect(cli.exitCode).toBe(4);
    const before = factsOf(report, 'inspect-allowed');
    const after = factsOf(report, 'prepare-not-allowed');
    expect(bindingState(after)).toEqual(bindingState(before));
    expect(consoleState(after)).toEqual(consoleState(before));
    expect(after.devVfio).not.toContain(group);
    expect(journalPresent(after)).toBe(false);
  });

  describe('prepare --allow-boot-gpu', () => {
    it('exits 0 and reports the group prepared', () => {
      const cli = cliOf(report, 'prepare');
      expect(cli.exitCode, cli.stderr).toBe(0);
      const result = handoffResult(cli.json, BOOT_GPU);
      expect(result.outcome).toBe('prepared');
      expect(String(result.group)).toBe(group);
    });

    it('moves both functions to vfio-pci and creates /dev/vfio/<group>', () => {
      const after = factsOf(report, 'prepare');
      expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO])).toEqual({ [BOOT_GPU]: 'vfio-pci', [BOOT_AUDIO]: 'vfio-pci' });
      expect(after.devVfio).toContain(group);
    });

    it('releases the console and the firmware framebuffer', () => {
      const after = factsOf(report, 'prepare');
      expect(fbconBound(after)).toBe(false);
      expect(after.procFb).toEqual([]);
      expect(after.platformFramebuffers['efi-framebuffer.0'] ?? null).toBeNull();
      expect(after.iomem.filter((l) => l.endsWith(': efifb'))).toEqual([]);
    });

    it('leaves no journal behind', () => {
      expect(journalPresent(factsOf(report, 'prepare'))).toBe(false);
    });

    it('hands a group a VMM can use: container, viable group, TYPE1v2, a device fd per function, every BAR read and mapped', () => {
      const check = vfioCheckOf(report, 'vfio-check');
      expectEveryBarMaps(check, [BOOT_GPU, BOOT_AUDIO]);
      const gpu = check.devices[0]!;
      expect(gpu.regions).toBeGreaterThanOrEqual(9); // 6 BARs + ROM + config + VGA legacy
      expect(gpu.vga).toBe(true);
      expect(gpu.regionSizes?.['8']).toBe(0xc0000); // the legacy VGA region, offered on VGA-class devices only
      expect(gpu.bars?.find((b) => b.index === 0)?.size).toBe(16 << 20); // BAR0: the framebuffer efifb lived in
    });

    it('the modprobe of vfio-pci also brought the IOMMU backend (vfio softdep post: vfio_iommu_type1)', () => {
      expect(factsOf(report, 'initial').modules).toEqual({ vfio_pci: false, vfio_iommu_type1: false, iommufd: false });
      expect(factsOf(report, 'prepare').modules).toEqual({ vfio_pci: true, vfio_iommu_type1: true, iommufd: false });
    });

    it('reports ready afterwards, and a second prepare is a no-op', () => {
      expect(inspectGpu(cliOf(report, 'inspect-after-prepare').json, BOOT_GPU).verdict).toBe('ready');
      const again = cliOf(report, 'prepare-again');
      expect(again.exitCode).toBe(0);
      expect(handoffResult(again.json, BOOT_GPU).outcome).toBe('already');
      expect(bindingState(factsOf(report, 'prepare-again'))).toEqual(bindingState(factsOf(report, 'prepare')));
    });
  });

  describe('release', () => {
    it('gives both functions back: off vfio-pci, overrides cleared, /dev/vfio/<group> gone', () => {
      const cli = cliOf(report, 'release');
      expect(cli.exitCode, cli.stderr).toBe(0);
      const after = factsOf(report, 'release');
      // No native driver is loaded in this guest, so "back to the host" means unbound.
      expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO])).toEqual({ [BOOT_GPU]: null, [BOOT_AUDIO]: null });
      expect(after.pci[BOOT_GPU]?.driverOverride).toBeNull();
      expect(after.pci[BOOT_AUDIO]?.driverOverride).toBeNull();
      expect(after.devVfio).not.toContain(group);
      expect(journalPresent(after)).toBe(false);
    });

    it('is idempotent', () => {
      const again = cliOf(report, 'release-again');
      expect(again.exitCode).toBe(0);
      expect(bindingState(factsOf(report, 'release-again'))).toEqual(bindingState(factsOf(report, 'release')));
    });
  });
});
