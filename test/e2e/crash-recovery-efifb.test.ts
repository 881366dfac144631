/**
 * Scenario e on the efifb boot GPU (no native driver): SIGKILL right after the console step (k=1) and right
 * after the framebuffer step (k=2), one boot each, because the kernel unregisters efi-framebuffer.0 on the
 * first vfio-pci bind and these steps never come back in the same boot. The next prepare must converge
 * (group on vfio-pci) or roll back (efifb and fbcon back) — never a group or console left half-done.
 */
import { beforeAll, describe, expect, it } from 'vitest';

import { BOOT_AUDIO, BOOT_GPU, expectEveryBarMaps, fbconBound, handoffResult, journalPresent } from './harness/expect-facts.js';
import { LAYOUTS } from './harness/qemu.js';
import { cliOf, driversOf, factsOf, groupNumber, vfioCheckOf, type GuestReport } from './harness/report.js';
import { kernelSuite, runScenario } from './harness/suite.js';

const CRASH_STEPS = [
  { k: 1, expectedKind: 'unbind-vtconsole' },
  { k: 2, expectedKind: 'unbind-framebuffer' },
] as const;

kernelSuite("e'. SIGKILL during the console/framebuffer steps", (series) => {
  describe.each(CRASH_STEPS)('crash after step $k', ({ k, expectedKind }) => {
    let report: GuestReport;
    let group: string;

    beforeAll(async () => {
      report = (await runScenario(series, LAYOUTS.bootGpu, 'crashRecoveryEfifb', { k: String(k) })).report;
      group = groupNumber(factsOf(report, 'initial'), BOOT_GPU);
    });

    it('was killed by the hook with a journal left behind', () => {
      expect(report.error).toBeUndefined();
      expect(report.complete).toBe(true);
      expect(cliOf(report, 'crash').signal).toBe('SIGKILL');
      expect(journalPresent(factsOf(report, 'crash'))).toBe(true);
    });

    it(`step ${k} is ${expectedKind} (the plan releases the console before the framebuffer)`, () => {
      // The journal the killed run left: which step it had just completed.
      const journal = JSON.parse(factsOf(report, 'crash').stateDir['journal.json'] ?? 'null') as {
        preamble: { steps: { kind: string }[] };
        groups: { steps: { kind: string }[] }[];
      } | null;
      const steps = [...(journal?.preamble.steps ?? []), ...(journal?.groups.flatMap((g) => g.steps) ?? [])];
      expect(steps[k - 1]?.kind).toBe(expectedKind);
    });

    it('the next prepare converges or rolls back, never half-done', () => {
      const rerun = cliOf(report, 'rerun');
      expect(rerun.exitCode, rerun.stdout + rerun.stderr).toBe(0);
      const after = factsOf(report, 'rerun');
      const drivers = driversOf(after, [BOOT_GPU, BOOT_AUDIO]);
      if (drivers[BOOT_GPU] === 'vfio-pci') {
        expect(drivers[BOOT_AUDIO]).toBe('vfio-pci');
        expect(after.devVfio).toContain(group);
        expect(handoffResult(rerun.json, BOOT_GPU).outcome).not.toBe('failed');
        expectEveryBarMaps(vfioCheckOf(report, 'vfio-check'), [BOOT_GPU, BOOT_AUDIO]);
      } else {
        // Rolled back: nothing on vfio-pci, and the console is whole again (efifb bound, fbcon on it).
        expect(drivers).toEqual({ [BOOT_GPU]: null, [BOOT_AUDIO]: null });
        expect(after.platformFramebuffers['efi-framebuffer.0']).toBe('efi-framebuffer');
        expect(fbconBound(after)).toBe(true);
      }
      expect(journalPresent(after)).toBe(false);
    });

    it('release then gives the group back', () => {
      const release = cliOf(report, 'release');
      expect(release.exitCode, release.stderr).toBe(0);
      const after = factsOf(report, 'release');
      expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO])).toEqual({ [BOOT_GPU]: null, [BOOT_AUDIO]: null });
      expect(after.devVfio).not.toContain(group);
      expect(journalPresent(after)).toBe(false);
    });
  });
});
