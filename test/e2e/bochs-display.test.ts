/**
 * Scenario f: a non-VGA boot display. QEMU's `bochs-display` (class 0x038000, no `boot_vga`) is the only display;
 * OVMF gives it a GOP, so efifb sits inside its BAR0. vfio-pci removes conflicting firmware framebuffers only for
 * VGA-class devices, so here a plain bind leaves efifb in the BAR and the VMM's first read or mmap of BAR0 fails
 * with EBUSY (`BAR 0: can't reserve`). inspect must name the device the boot display and block it without
 * --allow-boot-gpu; prepare with it must release console and efifb itself, load an IOMMU backend when none is
 * there (this guest has no udev), and leave every BAR mappable. The bind-only step shows the failure our release
 * step prevents, and a prepare over that bind repairs it.
 */
import { beforeAll, describe, expect, it } from 'vitest';

import { BOOT_GPU, bindingState, codes, consoleState, expectEveryBarMaps, fbconBound, handoffResult, inspectGpu, journalPresent } from './harness/expect-facts.js';
import { LAYOUTS } from './harness/qemu.js';
import { cliOf, factsOf, groupMembers, groupNumber, step, vfioCheckOf, type GuestReport } from './harness/report.js';
import { kernelSuite, runScenario } from './harness/suite.js';

const efifbInside = (lines: readonly string[]): boolean => lines.some((l) => l.endsWith(': efifb'));

kernelSuite('f. non-VGA boot display (bochs-display, efifb in BAR0)', (series) => {
  let report: GuestReport;
  let group: string;

  beforeAll(async () => {
    report = (await runScenario(series, LAYOUTS.bochsDisplay, 'bochsDisplay')).report;
    group = groupNumber(factsOf(report, 'initial'), BOOT_GPU);
  });

  it('ran the whole scenario in the guest', () => {
    expect(report.error).toBeUndefined();
    expect(report.complete).toBe(true);
  });

  it('starts with efifb inside BAR0 of a class-0x0380 device that has no boot_vga, nothing VFIO loaded', () => {
    const initial = factsOf(report, 'initial');
    expect(initial.pci[BOOT_GPU]?.class).toBe('0x038000');
    expect(initial.pci[BOOT_GPU]?.driver).toBeNull();
    expect(initial.pci[BOOT_GPU]?.bootVga).toBeNull();
    expect(groupMembers(initial, BOOT_GPU)).toEqual([BOOT_GPU]);
    expect(initial.platformFramebuffers).toEqual({ 'efi-framebuffer.0': 'efi-framebuffer' });
    expect(initial.procFb).toEqual(['0 EFI VGA']);
    expect(fbconBound(initial)).toBe(true);
    // efifb nests inside one of the device's BARs in /proc/iomem (BAR0, 16 MiB; the other entries are ROM and MMIO).
    const iomem = (step(report, 'initial').data as { iomem: string }).iomem.split('\n');
    const fb = iomem.findIndex((l) => l.trim().endsWith(': efifb'));
    expect(fb).toBeGreaterThan(0);
    expect(iomem[fb - 1]?.trim()).toMatch(new RegExp(`^[0-9a-f]+-[0-9a-f]+ : ${BOOT_GPU}$`));
    // The guest loaded vfio-pci and then removed vfio_iommu_type1: vfio-pci without an IOMMU backend.
    expect(initial.modules).toEqual({ vfio_pci: true, vfio_iommu_type1: false, iommufd: false });
  });

  it(`efi-framebuffer.0 sits ${series === '6.1' ? 'under devices/platform' : 'under the PCI device'} in sysfs`, () => {
    const path = factsOf(report, 'initial').platformFramebufferPaths['efi-framebuffer.0'];
    if (series === '6.1') expect(path).toBe('devices/platform/efi-framebuffer.0');
    else expect(path).toBe(`devices/pci0000:00/${BOOT_GPU}/efi-framebuffer.0`);
  });

  describe('inspect', () => {
    it('names the device the boot display (efifb in its BAR) and blocks it without --allow-boot-gpu', () => {
      const cli = cliOf(report, 'inspect');
      expect(cli.exitCode).toBe(0);
      const gpu = inspectGpu(cli.json, BOOT_GPU);
      expect(gpu.bootGpu).toBe(true);
      expect(gpu.framebuffers).toEqual(['efi-framebuffer.0']);
      expect(gpu.verdict).toBe('blocked');
      expect(codes(gpu.reasons)).toContain('BOOT_GPU_NOT_PERMITTED');
      expect(gpu.plan).toEqual([]);
    });

    it('reports that no VFIO IOMMU backend is loaded, but vfio_iommu_type1 is loadable', () => {
      const host = (cliOf(report, 'inspect').json as { host: { vfioIommuBackend: unknown } }).host;
      expect(host.vfioIommuBackend).toEqual({ available: false, type1: { loaded: false, loadable: true }, iommufd: false });
    });
  });

  it('refuses prepare without --allow-boot-gpu (exit 4) and writes nothing', () => {
    const cli = cliOf(report, 'prepare-not-allowed');
    expect(cli.exitCode, cli.stdout + cli.stderr).toBe(4);
    const before = factsOf(report, 'inspect');
    const after = factsOf(report, 'prepare-not-allowed');
    expect(bindingState(after)).toEqual(bindingState(before));
    expect(consoleState(after)).toEqual(consoleState(before));
    expect(after.devVfio).not.toContain(group);
    expect(after.modules).toEqual(before.modules);
    expect(journalPresent(after)).toBe(false);
  });

  describe('prepare --allow-boot-gpu', () => {
    it('loads vfio_iommu_type1, releases console and efifb, binds vfio-pci', () => {
      const cli = cliOf(report, 'prepare');
      expect(cli.exitCode, cli.stdout + cli.stderr).toBe(0);
      const preamble = (cli.json as { preamble: { kind: string; target: string; outcome: string }[] }).preamble;
      expect(preamble).toContainEqual({ kind: 'load-module', target: 'vfio_iommu_type1', outcome: 'done' });
      const result = handoffResult(cli.json, BOOT_GPU);
      expect(result.outcome).toBe('prepared');
      expect(result.steps.map((s) => s.kind)).toEqual(expect.arrayContaining(['unbind-vtconsole', 'unbind-framebuffer']));
      const after = factsOf(report, 'prepare');
      expect(after.modules.vfio_pci).toBe(true);
      expect(after.modules.vfio_iommu_type1).toBe(true);
      expect(after.pci[BOOT_GPU]?.driver).toBe('vfio-pci');
      expect(after.devVfio).toContain(group);
      expect(fbconBound(after)).toBe(false);
      expect(after.procFb).toEqual([]);
      expect(efifbInside(after.iomem)).toBe(false);
      expect(journalPresent(after)).toBe(false);
    });

    it('hands over a device whose every BAR a VMM can read and map', () => {
      expectEveryBarMaps(vfioCheckOf(report, 'vfio-check'));
    });

    it('reports the device ready afterwards', () => {
      expect(inspectGpu(cliOf(report, 'inspect-after-prepare').json, BOOT_GPU).verdict).toBe('ready');
    });
  });

  it('release gives the device and efifb back (the platform device survives a non-VGA vfio-pci bind)', () => {
    const cli = cliOf(report, 'release');
    expect(cli.exitCode, cli.stdout + cli.stderr).toBe(0);
    const after = factsOf(report, 'release');
    expect(after.pci[BOOT_GPU]?.driver).toBeNull();
    expect(after.pci[BOOT_GPU]?.driverOverride).toBeNull();
    expect(after.devVfio).not.toContain(group);
    expect(after.platformFramebuffers).toEqual({ 'efi-framebuffer.0': 'efi-framebuffer' });
    expect(efifbInside(after.iomem)).toBe(true);
    expect(fbconBound(after)).toBe(true);
  });

  describe('bind only (driver_override + drivers_probe, no framebuffer release)', () => {
    it('binds vfio-pci, and efifb stays bound inside BAR0', () => {
      const after = factsOf(report, 'bind-only');
      expect(after.pci[BOOT_GPU]?.driver).toBe('vfio-pci');
      expect(after.devVfio).toContain(group);
      expect(after.platformFramebuffers).toEqual({ 'efi-framebuffer.0': 'efi-framebuffer' });
      expect(efifbInside(after.iomem)).toBe(true);
    });

    it('the VMM opens group and device but cannot read or map BAR0: EBUSY, "can\'t reserve"', () => {
      const check = vfioCheckOf(report, 'vfio-check-bind-only');
      expect(check.ok).toBe(false);
      expect(check.viable).toBe(true);
      expect(check.setIommu).toBe(0);
      const bar0 = check.devices[0]?.bars?.find((b) => b.index === 0);
      expect(bar0?.read).toMatch(/Errno 16/);
      expect(bar0?.mmap).toMatch(/Errno 16/);
      // The other BAR (bochs' MMIO registers) is fine: only the framebuffer's BAR conflicts.
      expect(check.devices[0]?.bars?.filter((b) => b.index !== 0).every((b) => b.ok)).toBe(true);
      expect(factsOf(report, 'vfio-check-bind-only').dmesg.some((l) => /vfio-pci 0000:00:02\.0: BAR 0: can't reserve/.test(l))).toBe(true);
    });

    it('inspect does not call it ready while efifb claims its BAR', () => {
      const gpu = inspectGpu(cliOf(report, 'inspect-bind-only').json, BOOT_GPU);
      expect(gpu.verdict).toBe('preparable');
      expect(gpu.plan.map((s) => s.kind)).toContain('unbind-framebuffer');
    });

    it('a prepare over that bind releases efifb, and then every BAR maps', () => {
      const cli = cliOf(report, 'prepare-over-bind-only');
      expect(cli.exitCode, cli.stdout + cli.stderr).toBe(0);
      const after = factsOf(report, 'prepare-over-bind-only');
      expect(after.pci[BOOT_GPU]?.driver).toBe('vfio-pci');
      expect(efifbInside(after.iomem)).toBe(false);
      expectEveryBarMaps(vfioCheckOf(report, 'vfio-check-repaired'));
    });
  });
});
