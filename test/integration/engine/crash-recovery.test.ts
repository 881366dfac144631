import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

/** Thrown by the step hook to stand in for SIGKILL: it escapes the engine without any cleanup of the journal. */
class Crash extends Error {}

const GROUP_MEMBERS = ['0000:01:00.0', '0000:01:00.1'];

function engine(kernel: SimulatedKernel, store: MemoryStateStore, crashAt?: number) {
  return new HandoffEngine({
    host: kernel,
    store,
    clock: realClock,
    logger: silentLogger,
    verifyTimeoutMs: 100,
    writeTimeoutMs: 300,
    afterStep: crashAt
      ? (n) => {
          if (n === crashAt) throw new Crash(`crash after step ${n}`);
        }
      : undefined,
  });
}

async function drivers(kernel: SimulatedKernel): Promise<(string | undefined)[]> {
  return Promise.all(GROUP_MEMBERS.map(async (a) => (await kernel.readLink(`sys/bus/pci/devices/${a}/driver`))?.split('/').pop()));
}

/** The invariant: the group is entirely on vfio-pci with its node, or entirely off vfio-pci without it. */
async function expectConsistent(kernel: SimulatedKernel): Promise<'vfio' | 'host'> {
  const d = await drivers(kernel);
  const node = await kernel.exists('dev/vfio/1');
  if (d.every((x) => x === 'vfio-pci')) {
    expect(node).toBe(true);
    return 'vfio';
  }
  expect(d.some((x) => x === 'vfio-pci')).toBe(false);
  expect(node).toBe(false);
  return 'host';
}

const sel = { all: false as const, selectors: parseSelectors(['0000:01:00.0']) };

describe('crash recovery of prepare (workstation boot GPU + audio)', async () => {
  // Count the steps of an uninterrupted prepare: preamble + group steps.
  const probe = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
  const full = await engine(probe, new MemoryStateStore()).prepare(sel, { allowBootGpu: true });
  const total = full.outcomes[0]!.steps.length + full.plan.preamble.length;
  const rollbackStates: string[] = [];

  it('has a multi-step plan to crash in', () => {
    expect(total).toBeGreaterThanOrEqual(8);
  });

  for (let k = 1; k <= total; k++) {
    it(`resumes to a viable vfio group after a crash following step ${k}`, async () => {
      const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
      const store = new MemoryStateStore();
      await expect(engine(kernel, store, k).prepare(sel, { allowBootGpu: true })).rejects.toBeInstanceOf(Crash);
      expect(store.journal).toBeDefined();
      const next = await engine(kernel, store).prepare(sel, { allowBootGpu: true });
      expect(await expectConsistent(kernel)).toBe('vfio');
      expect(store.journal).toBeUndefined();
      // Whatever the crash interrupted is reported as recovered (or nothing was left to do).
      expect(next.recovered.length + next.outcomes.length).toBeGreaterThan(0);
    });

    it(`rolls back to the host drivers when resuming after step ${k} fails`, async () => {
      const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
      const store = new MemoryStateStore();
      await expect(engine(kernel, store, k).prepare(sel, { allowBootGpu: true })).rejects.toBeInstanceOf(Crash);
      // Make the next bind to vfio-pci fail: resuming cannot succeed (the rollback's own probes then work;
      // the GPU had no driver before, so the exact rollback does not probe it at all).
      kernel.injectFault({ path: 'sys/bus/pci/drivers_probe', errno: 'EIO', times: 1 });
      const outcomes = await engine(kernel, store).recover();
      const state = await expectConsistent(kernel);
      // Nothing of the group had changed yet (crash right after loading vfio-pci): it stays on the host.
      const expected = outcomes.length === 0 || outcomes.some((o) => o.outcome === 'rolled_back') ? 'host' : 'vfio';
      expect(state).toBe(expected);
      rollbackStates.push(state);
      expect(store.journal).toBeUndefined();
      if (state === 'host') {
        expect((await drivers(kernel))[1]).toBe('snd_hda_intel');
      }
    });
  }

  it('exercised both endings: some resumes succeeded, some had to roll back', () => {
    expect(rollbackStates).toContain('vfio');
    expect(rollbackStates).toContain('host');
  });
});

describe('crash recovery of release', () => {
  it.each([1, 2, 3, 4, 5])('after a crash following release step %i the group is consistent', async (k) => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    const store = new MemoryStateStore();
    await engine(kernel, store).prepare(sel, { allowBootGpu: true });
    await expect(engine(kernel, store, k).release(sel)).rejects.toBeInstanceOf(Crash);
    await engine(kernel, store).recover();
    expect(await expectConsistent(kernel)).toBe('host');
    expect(store.journal).toBeUndefined();
  });
});
