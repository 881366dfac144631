import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

/**
 * Issue 9 kind 3: a failed prepare (and a release) puts every function back exactly as it was —
 * driver and driver_override — and never undoes what was there before vfio-handoff.
 */
const GPU = '0000:86:00.0';
const AUDIO = '0000:86:00.1';
const sel = { all: false as const, selectors: parseSelectors([GPU]) };

async function setup() {
  const kernel = new SimulatedKernel(await loadBuiltinProfile('t400-bound-by-other-tool'));
  const store = new MemoryStateStore();
  const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 150, writeTimeoutMs: 500 });
  return { kernel, store, sut };
}

const stateOf = (kernel: SimulatedKernel, a: string) => {
  const d = kernel.state().devices.find((x) => x.address === a)!;
  return { driver: d.driver, driverOverride: d.driverOverride };
};

describe('Quadro T400 bound to vfio-pci by another tool, its audio still on snd_hda_intel', () => {
  it('plans to move only the audio function', async () => {
    const { sut } = await setup();
    const report = await sut.inspect({ allowBootGpu: false });
    const plan = report.plans.get(GPU as never)!;
    const writes = plan.groups.flatMap((g) => g.steps).filter((s) => s.kind !== 'verify-group');
    expect(writes.map((s) => ('address' in s ? s.address : ''))).toEqual([AUDIO, AUDIO, AUDIO]);
    expect(plan.groups[0]!.record.originalDrivers).toEqual({ [GPU]: 'vfio-pci', [AUDIO]: 'snd_hda_intel' });
    expect(plan.groups[0]!.record.originalOverrides).toEqual({ [GPU]: 'vfio-pci', [AUDIO]: null });
  });

  it('a prepare that fails verifying 86:00.1 rolls back only 86:00.1; the GPU keeps vfio-pci and its override', async () => {
    const { kernel, store, sut } = await setup();
    // vfio-pci's probe of the audio function "succeeds" as a write but nothing binds: verification fails.
    kernel.injectFault({ path: 'sys/bus/pci/drivers_probe', errno: 'EIO', times: 1 });
    const report = await sut.prepare(sel, { allowBootGpu: false });
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['rolled_back']);
    expect(report.outcomes[0]!.rollback!.every((s) => s.outcome !== 'failed')).toBe(true);
    expect(stateOf(kernel, GPU)).toEqual({ driver: 'vfio-pci', driverOverride: 'vfio-pci' });
    expect(stateOf(kernel, AUDIO)).toEqual({ driver: 'snd_hda_intel', driverOverride: undefined });
    expect(kernel.state().vfioGroups).toEqual([6]);
    expect(kernel.writeLog.filter((w) => w.path.includes(GPU) || w.value.includes(GPU))).toEqual([]);
    expect(store.records.size).toBe(0);
  });

  it('release after a successful prepare gives back only the audio function', async () => {
    const { kernel, sut } = await setup();
    expect((await sut.prepare(sel, { allowBootGpu: false })).outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    expect(stateOf(kernel, AUDIO)).toEqual({ driver: 'vfio-pci', driverOverride: 'vfio-pci' });
    kernel.clearWriteLog();
    const rel = await sut.release(sel);
    expect(rel.outcomes.map((o) => o.outcome)).toEqual(['released']);
    expect(stateOf(kernel, GPU)).toEqual({ driver: 'vfio-pci', driverOverride: 'vfio-pci' });
    expect(stateOf(kernel, AUDIO)).toEqual({ driver: 'snd_hda_intel', driverOverride: undefined });
    expect(kernel.writeLog.filter((w) => w.path.includes(GPU) || w.value.includes(GPU))).toEqual([]);
  });

  it('a release that fails is rolled back to the state before the release, overrides included', async () => {
    const { kernel, sut } = await setup();
    await sut.prepare(sel, { allowBootGpu: false });
    const before = [stateOf(kernel, GPU), stateOf(kernel, AUDIO)];
    kernel.injectFault({ path: 'sys/bus/pci/drivers_probe', errno: 'EIO', times: 1 });
    const rel = await sut.release(sel);
    expect(rel.outcomes.map((o) => o.outcome)).toEqual(['rolled_back']);
    expect([stateOf(kernel, GPU), stateOf(kernel, AUDIO)]).toEqual(before);
  });

  it('restores a prior override that is not vfio-pci (e.g. "none") and leaves a driverless function driverless', async () => {
    const base = await loadBuiltinProfile('t400-bound-by-other-tool');
    const kernel = new SimulatedKernel({
      ...base,
      devices: base.devices.map((d) =>
        d.address === GPU ? { ...d, driver: undefined, driverOverride: 'none' } : d.address === AUDIO ? { ...d, driverOverride: 'snd_hda_intel' } : d,
      ),
    });
    const store = new MemoryStateStore();
    const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 150 });
    expect((await sut.prepare(sel, { allowBootGpu: false })).outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    await sut.release(sel);
    expect(stateOf(kernel, GPU)).toEqual({ driver: undefined, driverOverride: 'none' });
    expect(stateOf(kernel, AUDIO)).toEqual({ driver: 'snd_hda_intel', driverOverride: 'snd_hda_intel' });
  });
});
