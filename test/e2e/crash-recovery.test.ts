/**
 * Scenario e: the CLI SIGKILLs itself right after step k of prepare (test hook), for k = 1, 2, ... until a run
 * has fewer steps than k. After every crash the next prepare recovers the journal and must converge (group
 * viable on vfio-pci) or roll back (group on its native drivers) — never a half-bound group. release then
 * restores the native drivers before the next k. All k run in one boot.
 */
import { beforeAll, expect, it } from 'vitest';

import { BOOT_AUDIO, BOOT_GPU, expectEveryBarMaps, journalPresent } from './harness/expect-facts.js';
import { LAYOUTS } from './harness/qemu.js';
import { cliOf, driversOf, factsOf, groupNumber, step, vfioCheckOf, type GuestReport } from './harness/report.js';
import { kernelSuite, runScenario } from './harness/suite.js';

const NATIVE = { [BOOT_GPU]: 'bochs-drm', [BOOT_AUDIO]: 'snd_hda_intel' };
/** Three CLI runs per k, each 3–20 s under TCG depending on host load (see the suite's README section). */
const CRASH_BOOT_MS = 1_500_000;
const ON_VFIO = { [BOOT_GPU]: 'vfio-pci', [BOOT_AUDIO]: 'vfio-pci' };

kernelSuite('e. SIGKILL after each prepare step', (series) => {
  let report: GuestReport;
  let group: string;
  let crashed: number[];

  beforeAll(async () => {
    report = (await runScenario(series, LAYOUTS.bootGpu, 'crashRecovery', undefined, { timeoutMs: CRASH_BOOT_MS })).report;
    group = groupNumber(factsOf(report, 'initial'), BOOT_GPU);
    crashed = report.steps
      .filter((s) => /^k\d+:crash$/.test(s.name) && s.cli?.signal === 'SIGKILL')
      .map((s) => Number(/^k(\d+)/.exec(s.name)?.[1]));
  }, CRASH_BOOT_MS + 60_000);

  it('ran every k until prepare finished before the hook fired', () => {
    expect(report.error).toBeUndefined();
    expect(report.complete).toBe(true);
    const last = step(report, 'last-k').data as { k: number };
    expect(crashed).toEqual(Array.from({ length: last.k - 1 }, (_, i) => i + 1));
    expect(crashed.length).toBeGreaterThanOrEqual(4); // at least override/unbind/probe of one function + verify
    const finalRun = cliOf(report, `k${last.k}:crash`);
    expect(finalRun.exitCode, finalRun.stderr).toBe(0);
    expectEveryBarMaps(vfioCheckOf(report, `k${last.k}:vfio-check`), [BOOT_GPU, BOOT_AUDIO]);
  });

  it('left a journal behind at every crash (the step was journaled before the kill)', () => {
    for (const k of crashed) expect(journalPresent(factsOf(report, `k${k}:crash`)), `k=${k}`).toBe(true);
  });

  it('converges or rolls back on the next prepare, never leaving a half-bound group', () => {
    for (const k of crashed) {
      const rerun = cliOf(report, `k${k}:rerun`);
      expect(rerun.exitCode, `k=${k}: ${rerun.stdout}${rerun.stderr}`).toBe(0);
      const after = factsOf(report, `k${k}:rerun`);
      const drivers = driversOf(after, [BOOT_GPU, BOOT_AUDIO]);
      const converged = JSON.stringify(drivers) === JSON.stringify(ON_VFIO);
      const rolledBack = JSON.stringify(drivers) === JSON.stringify(NATIVE);
      expect(converged || rolledBack, `k=${k}: ${JSON.stringify(drivers)}`).toBe(true);
      if (converged) {
        expect(after.devVfio, `k=${k}`).toContain(group);
        // Converged means a VMM can use it: every BAR of both functions reads and maps.
        expectEveryBarMaps(vfioCheckOf(report, `k${k}:vfio-check`), [BOOT_GPU, BOOT_AUDIO]);
      } else {
        expect(after.devVfio, `k=${k}`).not.toContain(group);
      }
      expect(journalPresent(after), `k=${k}`).toBe(false);
    }
  });

  it('release restores the native drivers after every k', () => {
    for (const k of [...crashed, crashed.length + 1]) {
      const release = cliOf(report, `k${k}:release`);
      expect(release.exitCode, `k=${k}: ${release.stderr}`).toBe(0);
      const after = factsOf(report, `k${k}:settled`);
      expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO]), `k=${k}`).toEqual(NATIVE);
      expect(after.pci[BOOT_GPU]?.driverOverride ?? null, `k=${k}`).toBeNull();
      expect(after.pci[BOOT_AUDIO]?.driverOverride ?? null, `k=${k}`).toBeNull();
      expect(after.devVfio, `k=${k}`).not.toContain(group);
      expect(journalPresent(after), `k=${k}`).toBe(false);
    }
  });
});
