import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { planSteps } from '../../../src/handoff/plan.js';
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

/**
 * The invariant, exactly: the group entirely on vfio-pci with its node, or back on exactly the drivers
 * the profile booted with (GPU unbound — nvidia is not loaded — and audio on snd_hda_intel), no node.
 */
async function expectConsistent(kernel: SimulatedKernel): Promise<'vfio' | 'host'> {
  const d = await drivers(kernel);
  const node = await kernel.exists('dev/vfio/1');
  if (d.every((x) => x === 'vfio-pci')) {
    expect(node).toBe(true);
    return 'vfio';
  }
  expect(d).toEqual([undefined, 'snd_hda_intel']);
  expect(node).toBe(false);
  return 'host';
}

/**
 * The prepare of 0000:01:00.0 step by step (1 and 2 = the preamble's modprobes: vfio-pci, then the VFIO IOMMU
 * backend vfio_iommu_type1). After step 9 the last function is on vfio-pci: only the verification is left, so
 * a crash after it resumes even when probing fails.
 */
const PREPARE_STEPS = ['load-module', 'load-module', 'unbind-vtconsole', 'unbind-framebuffer', 'set-override', 'probe', 'set-override', 'unbind-driver', 'probe', 'verify-group'];
const LAST_PROBE = 9;
// The GPU had no driver before prepare (nvidia is not loaded): release unbinds it and probes nothing for it.
const RELEASE_STEPS = ['clear-override', 'unbind-driver', 'clear-override', 'unbind-driver', 'probe', 'verify-group', 'bind-framebuffer', 'bind-vtconsole'];

const sel = { all: false as const, selectors: parseSelectors(['0000:01:00.0']) };

describe('crash recovery of prepare (workstation boot GPU + audio)', async () => {
  // Count the steps of an uninterrupted prepare: preamble + group steps.
  const probe = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
  const full = await engine(probe, new MemoryStateStore()).prepare(sel, { allowBootGpu: true });
  const total = PREPARE_STEPS.length;
  const rollbackStates: string[] = [];

  it('crashes in the plan this file expects', () => {
    expect(planSteps(full.plan).map((s) => s.kind)).toEqual(PREPARE_STEPS);
  });

  for (let k = 1; k <= total; k++) {
    it(`resumes to a viable vfio group after a crash following step ${k}`, async () => {
      const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
      const store = new MemoryStateStore();
      await expect(engine(kernel, store, k).prepare(sel, { allowBootGpu: true })).rejects.toBeInstanceOf(Crash);
      expect(store.journal).toBeDefined();
      await engine(kernel, store).prepare(sel, { allowBootGpu: true });
      expect(await expectConsistent(kernel)).toBe('vfio');
      expect(store.journal).toBeUndefined();
      expect(await kernel.readText('sys/bus/pci/devices/0000:01:00.1/driver_override')).toBe('vfio-pci\n');
    });

    it(`rolls back to the host drivers when resuming after step ${k} fails`, async () => {
      const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
      const store = new MemoryStateStore();
      await expect(engine(kernel, store, k).prepare(sel, { allowBootGpu: true })).rejects.toBeInstanceOf(Crash);
      // Make the next bind to vfio-pci fail: resuming cannot succeed (the rollback's own probes then work;
      // the GPU had no driver before, so the exact rollback does not probe it at all).
      kernel.injectFault({ path: 'sys/bus/pci/drivers_probe', errno: 'EIO', times: 1 });
      await engine(kernel, store).recover();
      const state = await expectConsistent(kernel);
      // A probe still to do fails, and the group goes back; after the last probe only verifying was left.
      // (k = 1: the group had not started, nothing of it changed.)
      expect(state).toBe(k >= LAST_PROBE ? 'vfio' : 'host');
      rollbackStates.push(state);
      expect(store.journal).toBeUndefined();
    });
  }

  it('exercised both endings: some resumes succeeded, some had to roll back', () => {
    expect(rollbackStates).toContain('vfio');
    expect(rollbackStates).toContain('host');
  });
});

describe('crash recovery of release', () => {
  it('crashes in the plan this file expects', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    const store = new MemoryStateStore();
    await engine(kernel, store).prepare(sel, { allowBootGpu: true });
    const rel = await engine(kernel, store).release(sel, { dryRun: true });
    expect(planSteps(rel.plan).map((s) => s.kind)).toEqual(RELEASE_STEPS);
  });

  it.each(RELEASE_STEPS.map((_, i) => i + 1))('after a crash following release step %i the group is back on its original drivers', async (k) => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    const store = new MemoryStateStore();
    await engine(kernel, store).prepare(sel, { allowBootGpu: true });
    await expect(engine(kernel, store, k).release(sel)).rejects.toBeInstanceOf(Crash);
    await engine(kernel, store).recover();
    expect(await expectConsistent(kernel)).toBe('host');
    expect(store.journal).toBeUndefined();
  });
});
