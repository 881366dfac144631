/**
 * Scenario f: the boot-VGA handoff (bochs-drm + snd_hda_intel, fbcon on bochs-drm's framebuffer) timed two ways in
 * one boot: our `prepare` (the whole process, wall time) against the bare recipe — a shell script doing only the
 * same sysfs writes in the same order, taken from an strace of our own run. Between runs the group is restored
 * (our release, or the script's inverse) and the state checked. The figures go to the e2e output
 * (`.cache/kernel-e2e/out/handoffTiming-<series>/timing.json`) and the README; no timing is asserted (TCG, a busy
 * host), only that both ways do the same job from the same state and that the comparison is sound.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';

import { BOOT_AUDIO, BOOT_GPU, bindingState, fbconBound } from './harness/expect-facts.js';
import { LAYOUTS } from './harness/qemu.js';
import { driversOf, factsOf, step, type GuestReport } from './harness/report.js';
import { kernelSuite, runScenario } from './harness/suite.js';

interface Attribution {
  readonly totalMs: number;
  readonly nodeStartMs: number;
  readonly loadMs: number;
  readonly discoveryAndPlanMs: number;
  readonly stepsMs: number;
  readonly afterLastWriteMs: number;
  readonly moduleFiles: number;
  readonly modulesAfterDiscoveryStarted: number;
  readonly kernelWriteMs: number;
  readonly fsyncs: number;
  readonly fsyncMs: number;
  readonly writes: readonly { path: string; data: string; ret: number; kernelMs: number }[];
  readonly fsyncPaths: readonly string[];
}
interface Timing {
  readonly bare: string;
  readonly restore: string;
  readonly runs: readonly { round: number; kind: 'bare' | 'ours'; ms: number; status: number | null }[];
  readonly baselines: { readonly sh: readonly number[]; readonly node: readonly number[] };
}

const ROUNDS = 3;
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const r1 = (v: number): number => Math.round(v * 10) / 10;

kernelSuite('f. boot-VGA handoff timed against the bare recipe', (series) => {
  let report: GuestReport;
  let attribution: Attribution;
  let timing: Timing;
  let group: string;

  beforeAll(async () => {
    const run = await runScenario(series, LAYOUTS.bootGpu, 'handoffTiming', { rounds: String(ROUNDS) });
    report = run.report;
    group = factsOf(report, 'initial').pci[BOOT_GPU]?.iommuGroup ?? '';
    attribution = (step(report, 'traced-prepare').data as { attribution: Attribution }).attribution;
    timing = step(report, 'timing').data as Timing;
    const of = (kind: string): number[] => timing.runs.filter((r) => r.kind === kind).map((r) => r.ms);
    const summary = {
      kernel: run.kernel.release,
      rounds: ROUNDS,
      bareMs: of('bare').map(r1),
      oursMs: of('ours').map(r1),
      bareMedianMs: r1(median(of('bare'))),
      oursMedianMs: r1(median(of('ours'))),
      ratio: Math.round((median(of('ours')) / median(of('bare'))) * 10) / 10,
      oursBeyondBareMs: r1(median(of('ours')) - median(of('bare'))),
      nodeStartMedianMs: r1(median(timing.baselines.node)),
      shStartMedianMs: r1(median(timing.baselines.sh)),
      tracedRun: Object.fromEntries(Object.entries(attribution).filter(([k]) => k !== 'writes')),
      writes: attribution.writes.map((w) => `${w.path} <- ${JSON.stringify(w.data)}`),
    };
    writeFileSync(join(run.boot.outDir, 'timing.json'), `${JSON.stringify(summary, null, 1)}\n`);
    console.log(`[e2e] handoff timing on ${run.kernel.release}: ${JSON.stringify(summary)}`);
  });

  it('ran the whole scenario in the guest', () => {
    expect(report.error).toBeUndefined();
    expect(report.complete).toBe(true);
  });

  it('the bare recipe is our own sysfs writes, in order, each accepted by the kernel', () => {
    const traced = step(report, 'traced-prepare').data as { status: number; stderr: string };
    expect(traced.status, traced.stderr).toBe(0);
    const writes = attribution.writes.map((w) => [w.path, w.data.trim()]);
    // The handoff of this group, as the kernel needs it (kernel.md): each function unbound from its native driver,
    // overridden to vfio-pci and reprobed (fbcon lets go of bochs-drm's framebuffer by itself when it goes).
    expect(writes).toEqual(expect.arrayContaining([
      ['/sys/bus/pci/drivers/bochs-drm/unbind', BOOT_GPU],
      ['/sys/bus/pci/drivers/snd_hda_intel/unbind', BOOT_AUDIO],
      // strace names the file behind the fd: /sys/devices/pci0000:00/<bdf>/driver_override.
      [expect.stringMatching(new RegExp(`^/sys/devices/.*/${BOOT_GPU}/driver_override$`)), 'vfio-pci'],
      [expect.stringMatching(new RegExp(`^/sys/devices/.*/${BOOT_AUDIO}/driver_override$`)), 'vfio-pci'],
      ['/sys/bus/pci/drivers_probe', BOOT_GPU],
      ['/sys/bus/pci/drivers_probe', BOOT_AUDIO],
    ]));
    expect(attribution.writes.every((w) => w.ret === Buffer.byteLength(w.data))).toBe(true);
    const script = timing.bare.split('\n').filter((l) => l.startsWith('printf'));
    expect(script).toHaveLength(attribution.writes.length);
    script.forEach((line, i) => expect(line.endsWith(`> ${attribution.writes[i]!.path}`)).toBe(true));
  });

  it('every timed run starts from the initial state: native drivers, no overrides, fbcon on the framebuffer', () => {
    const initial = factsOf(report, 'initial');
    expect(driversOf(initial, [BOOT_GPU, BOOT_AUDIO])).toEqual({ [BOOT_GPU]: 'bochs-drm', [BOOT_AUDIO]: 'snd_hda_intel' });
    for (let i = 0; i < ROUNDS; i++) {
      for (const name of [`r${i}:before-bare`, `r${i}:before-ours`]) {
        const before = factsOf(report, name);
        expect(bindingState(before), name).toEqual(bindingState(initial));
        expect(fbconBound(before), name).toBe(true);
        expect(before.devVfio, name).not.toContain(group);
      }
    }
  });

  it('both ways do the whole job every time: the group on vfio-pci, /dev/vfio/<group>, the console released', () => {
    expect(group).not.toBe('');
    expect(timing.runs).toHaveLength(2 * ROUNDS);
    for (const run of timing.runs) {
      expect(run.status, `${run.kind} round ${run.round}`).toBe(0);
      const after = factsOf(report, `r${run.round}:${run.kind}`);
      expect(driversOf(after, [BOOT_GPU, BOOT_AUDIO])).toEqual({ [BOOT_GPU]: 'vfio-pci', [BOOT_AUDIO]: 'vfio-pci' });
      expect(after.devVfio).toContain(group);
      expect(fbconBound(after)).toBe(false);
    }
  });

  it('attributes our time: phases of the traced run add up to its total, with the journal fsyncs counted', () => {
    const parts = attribution.nodeStartMs + attribution.loadMs + attribution.discoveryAndPlanMs + attribution.stepsMs + attribution.afterLastWriteMs;
    expect(Math.abs(parts - attribution.totalMs)).toBeLessThan(1);
    expect(Object.values(attribution).filter((v) => typeof v === 'number').every((v) => v >= 0)).toBe(true);
    expect(attribution.moduleFiles).toBeGreaterThan(0);
    expect(attribution.fsyncs).toBeGreaterThan(0);
    expect(attribution.fsyncPaths.some((p) => p.startsWith('/var/lib/vfio-handoff/'))).toBe(true);
  });
});
