/**
 * What the executor writes down while it runs — the journal (when it is written, what each write says,
 * when it is removed), the group records a prepare stores, the debug log of each step, the preamble a
 * report shows and the outcome of a run that found its work done — and how `recover()` acts on what a crash left. Hosts: workstation-efifb (boot GPU
 * 0000:01:00.0 without a driver under efifb + fbcon, HDMI audio 0000:01:00.1 on snd_hda_intel, IOMMU group 1,
 * vfio-pci not loaded) and server-aspeed-4xh100 (H100s 0000:18:00.0 in group 31 and 0000:3b:00.0 in group 45,
 * both on nvidia). Every expectation is written here, from the journal's contract in src/state/journal.ts.
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger, type Logger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { discoverHost } from '../../../src/host/discover.js';
import { HandoffEngine, type EngineDeps } from '../../../src/handoff/engine.js';
import { HandoffExecutor } from '../../../src/handoff/executor.js';
import { planPrepare, type GroupRecord } from '../../../src/handoff/plan.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { assessGpu } from '../../../src/handoff/verdict.js';
import { noopHandoffRecorder } from '../../../src/metrics/recorders.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore, type Journal } from '../../../src/state/journal.js';

const GPU = '0000:01:00.0' as PciAddress;
const AUDIO = '0000:01:00.1' as PciAddress;
const H100_A = '0000:18:00.0' as PciAddress;
const H100_B = '0000:3b:00.0' as PciAddress;
const sel = (...a: string[]) => ({ all: false as const, selectors: parseSelectors(a) });
const TIMEOUTS = { verifyTimeoutMs: 200, writeTimeoutMs: 300 };
const LOAD_VFIO = { kind: 'load-module', module: 'vfio-pci' } as const;
const LOAD_TYPE1 = { kind: 'load-module', module: 'vfio_iommu_type1' } as const;
/** workstation-efifb's two functions before anything was done: what a rollback of group 1 restores. */
const BEFORE = { [GPU]: { driver: null, override: null }, [AUDIO]: { driver: 'snd_hda_intel', override: null } };

/** Stands in for SIGKILL: thrown from a step hook, it escapes the run without any cleanup. */
class Crash extends Error {}

async function workstation() {
  return new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
}
async function servers() {
  return new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
}
function engine(kernel: SimulatedKernel, store: MemoryStateStore, extra: Partial<EngineDeps> = {}) {
  return new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, ...TIMEOUTS, ...extra });
}
function executor(kernel: SimulatedKernel, store: MemoryStateStore) {
  return new HandoffExecutor({ host: kernel, store, clock: realClock, logger: silentLogger, recorder: noopHandoffRecorder, discover: () => discoverHost(kernel), ...TIMEOUTS });
}
function stateOf(kernel: SimulatedKernel, a: string) {
  const d = kernel.state().devices.find((x) => x.address === a)!;
  return { driver: d.driver, override: d.driverOverride };
}
/** Per journal write: how far the preamble is, and each group's status:completed. */
const progress = (writes: readonly Journal[]) => writes.map((j) => [j.preamble.completed, ...j.groups.map((g) => `${g.status}:${g.completed}`)]);

describe('the journal of a prepare (workstation-efifb)', () => {
  it('is written before the first step: a crash as vfio-pci starts loading leaves the journal with every group pending and its functions as they were', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    const onStep = () => {
      throw new Crash('killed as the first step starts');
    };
    await expect(engine(kernel, store, { onStep }).prepare(sel(GPU), { allowBootGpu: true })).rejects.toBeInstanceOf(Crash);
    expect(kernel.writeLog).toEqual([]);
    expect(store.journal).toMatchObject({
      operation: 'prepare',
      preamble: { steps: [LOAD_VFIO, LOAD_TYPE1], completed: 0 },
      groups: [{ group: 1, status: 'pending', completed: 0, before: BEFORE }],
    });
    // A pending group changed nothing: recovery leaves the host alone and removes the journal.
    expect(await engine(kernel, store).recover()).toEqual([]);
    expect(store.journal).toBeUndefined();
    expect(kernel.writeLog).toEqual([]);
  });

  it('counts each preamble step as it completes: a crash right after loading vfio-pci leaves a journal with one preamble step done', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    const afterStep = (n: number) => {
      if (n === 1) throw new Crash('killed after step 1');
    };
    await expect(engine(kernel, store, { afterStep }).prepare(sel(GPU), { allowBootGpu: true })).rejects.toBeInstanceOf(Crash);
    expect(store.journal?.preamble).toEqual({ steps: [LOAD_VFIO, LOAD_TYPE1], completed: 1 });
    expect(store.journal?.groups.map((g) => [g.group, g.status, g.completed])).toEqual([[1, 'pending', 0]]);
  });

  it('a prepare that succeeds: pending, running step by step, done, and then the journal is removed', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    const report = await engine(kernel, store).prepare(sel(GPU), { allowBootGpu: true });
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    // Eight group steps: fbcon, efifb, override/probe of the GPU, override/unbind/probe of the audio, verify.
    expect(progress(store.journalWrites)).toEqual([
      [0, 'pending:0'],
      [1, 'pending:0'],
      [2, 'pending:0'],
      ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => [2, `running:${n}`]),
      [2, 'done:8'],
    ]);
    expect(store.journal).toBeUndefined();
  });

  it('a prepare that rolls back: failed at the step that failed, then rolled-back, and then the journal is removed', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    const report = await engine(kernel, store).prepare(sel(GPU), { allowBootGpu: true });
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['rolled_back']);
    // The sixth group step (the audio's unbind from snd_hda_intel) failed: five had completed.
    expect(progress(store.journalWrites).slice(3)).toEqual([
      ...[0, 1, 2, 3, 4, 5].map((n) => [2, `running:${n}`]),
      [2, 'failed:5'],
      [2, 'rolled-back:5'],
    ]);
    expect(store.journal).toBeUndefined();
  });

  it('a run with nothing to do writes no journal at all', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    await engine(kernel, store).prepare(sel(GPU), { allowBootGpu: true });
    const written = store.journalWrites.length;
    const again = await engine(kernel, store).prepare(sel(GPU), { allowBootGpu: true });
    expect(again.outcomes.map((o) => [o.group, o.outcome])).toEqual([[1, 'already']]);
    expect(store.journalWrites.length).toBe(written);
    expect(store.journal).toBeUndefined();
  });

  it('a run of only host-wide steps (loading vfio-pci, no group) journals them and removes the journal when they are done', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    const outcomes = await executor(kernel, store).run({ operation: 'prepare', preamble: [LOAD_VFIO], groups: [] });
    expect(outcomes).toEqual([]);
    expect(kernel.state().loadedDrivers).toContain('vfio-pci');
    expect(store.journalWrites.map((j) => j.preamble)).toEqual([
      { steps: [LOAD_VFIO], completed: 0 },
      { steps: [LOAD_VFIO], completed: 1 },
    ]);
    expect(store.journal).toBeUndefined();
  });

  it('a dry run reports the planned module loads in its plan but no preamble outcomes: nothing ran', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    const report = await engine(kernel, store).prepare(sel(GPU), { allowBootGpu: true, dryRun: true });
    expect(report.plan.preamble).toEqual([LOAD_VFIO, LOAD_TYPE1]);
    expect(report.preamble).toEqual([]);
    expect(kernel.writeLog).toEqual([]);
  });
});

describe('the journal of a prepare of two groups (server-aspeed-4xh100)', () => {
  // Steps 1-2 load vfio-pci and vfio_iommu_type1; per H100 set-override, unbind-driver (nvidia), probe, verify-group:
  // steps 3-6 are group 31's, 7-10 group 45's.
  it('a crash inside the first group leaves the second pending: recovery finishes the first and does not touch the second', async () => {
    const kernel = await servers();
    const store = new MemoryStateStore();
    const afterStep = (n: number) => {
      if (n === 4) throw new Crash('killed after step 4');
    };
    await expect(engine(kernel, store, { afterStep }).prepare(sel(H100_A, H100_B), { allowBootGpu: false })).rejects.toBeInstanceOf(Crash);
    expect(store.journal?.groups.map((g) => [g.group, g.status, g.completed])).toEqual([
      [31, 'running', 2],
      [45, 'pending', 0],
    ]);
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.outcome])).toEqual([[31, 'resumed']]);
    expect(stateOf(kernel, H100_A)).toEqual({ driver: 'vfio-pci', override: 'vfio-pci' });
    expect(stateOf(kernel, H100_B)).toEqual({ driver: 'nvidia', override: undefined });
    expect(store.journal).toBeUndefined();
  });

  it('a crash inside the second group leaves the first done: recovery finishes only the second', async () => {
    const kernel = await servers();
    const store = new MemoryStateStore();
    const afterStep = (n: number) => {
      if (n === 8) throw new Crash('killed after step 8');
    };
    await expect(engine(kernel, store, { afterStep }).prepare(sel(H100_A, H100_B), { allowBootGpu: false })).rejects.toBeInstanceOf(Crash);
    expect(store.journal?.groups.map((g) => [g.group, g.status, g.completed])).toEqual([
      [31, 'done', 4],
      [45, 'running', 2],
    ]);
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.outcome])).toEqual([[45, 'resumed']]);
    expect([stateOf(kernel, H100_A), stateOf(kernel, H100_B)]).toEqual([
      { driver: 'vfio-pci', override: 'vfio-pci' },
      { driver: 'vfio-pci', override: 'vfio-pci' },
    ]);
  });

  it('when one group prepares and the other has a write that hangs, the journal is kept for the hung group', async () => {
    const kernel = await servers();
    const store = new MemoryStateStore();
    kernel.injectHang({ path: `sys/bus/pci/devices/${H100_B}/driver_override` });
    const report = await engine(kernel, store).prepare(sel(H100_A, H100_B), { allowBootGpu: false });
    expect(report.outcomes.map((o) => [o.group, o.outcome])).toEqual([
      [31, 'prepared'],
      [45, 'rolled_back'],
    ]);
    expect(store.journal?.groups.map((g) => [g.group, g.status, g.hung?.target])).toEqual([
      [31, 'done', undefined],
      [45, 'failed', H100_B],
    ]);
    kernel.releaseHangs();
  });
});

describe('the records a run keeps (workstation-efifb)', () => {
  it('a release that rolls back leaves the stored record exactly as it was, even one written before overrides were kept', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    await engine(kernel, store).prepare(sel(GPU), { allowBootGpu: true });
    // The record as an older version wrote it: drivers only.
    const legacy: GroupRecord = {
      group: 1,
      gpus: [GPU],
      originalDrivers: { [GPU]: null, [AUDIO]: 'snd_hda_intel' },
      framebuffers: [{ device: 'efi-framebuffer.0', driver: 'efi-framebuffer' }],
      vtconsoles: ['vtcon1'],
    };
    store.records.set(1, legacy);
    kernel.injectFault({ path: 'sys/bus/pci/drivers/vfio-pci/unbind', errno: 'EIO', times: 1 });
    const report = await engine(kernel, store).release(sel(GPU));
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['rolled_back']);
    expect(store.records.get(1)).toEqual(legacy);
    expect([stateOf(kernel, GPU), stateOf(kernel, AUDIO)]).toEqual([
      { driver: 'vfio-pci', override: 'vfio-pci' },
      { driver: 'vfio-pci', override: 'vfio-pci' },
    ]);
  });

  it('a prepare keeps the framebuffers an earlier prepare recorded: other devices besides its own, and the earlier driver for the same device', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    // An earlier prepare of ours detached efi-framebuffer.0 from efidrm (Linux 6.16+) and a VESA framebuffer;
    // since then efifb took efi-framebuffer.0, and this prepare detaches it again.
    store.records.set(1, {
      group: 1,
      gpus: [GPU],
      originalDrivers: { [GPU]: null, [AUDIO]: 'snd_hda_intel' },
      originalOverrides: { [GPU]: null, [AUDIO]: null },
      framebuffers: [
        { device: 'efi-framebuffer.0', driver: 'efidrm' },
        { device: 'vesa-framebuffer.0', driver: 'vesafb' },
      ],
      vtconsoles: [],
    });
    const report = await engine(kernel, store).prepare(sel(GPU), { allowBootGpu: true });
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    expect(store.records.get(1)?.framebuffers).toEqual([
      { device: 'efi-framebuffer.0', driver: 'efidrm' },
      { device: 'vesa-framebuffer.0', driver: 'vesafb' },
    ]);
    expect(store.records.get(1)?.vtconsoles).toEqual(['vtcon1']);
  });
});

describe('recovering a journal an older version wrote (no driver_override in its record, no `before`)', () => {
  /** workstation-efifb's prepare as that version journaled it, crashed before its first group step. */
  async function crashedLegacyPrepare(kernel: SimulatedKernel): Promise<{ journal: Journal; record: GroupRecord }> {
    const snapshot = await discoverHost(kernel);
    const gpu = snapshot.gpus.find((g) => g.fn.address === GPU)!;
    const plan = planPrepare(snapshot, [assessGpu(snapshot, gpu, { allowBootGpu: true })]);
    const group = plan.groups[0]!;
    const record: GroupRecord = { group: 1, gpus: [GPU], originalDrivers: group.record.originalDrivers, framebuffers: group.record.framebuffers, vtconsoles: group.record.vtconsoles };
    // The crash came after the preamble: vfio-pci is loaded.
    await kernel.loadModule('vfio-pci');
    const journal: Journal = {
      version: 1,
      id: 'prepare-legacy',
      operation: 'prepare',
      pid: 1,
      startedAt: 0,
      preamble: { steps: [], completed: 0 },
      groups: [{ group: 1, record, steps: group.steps, completed: 0, status: 'running' }],
    };
    return { journal, record };
  }

  it('with its records file moved aside: the prepare is resumed and the record stored for it has every override unset', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    const { journal } = await crashedLegacyPrepare(kernel);
    store.journal = journal;
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.outcome])).toEqual([[1, 'resumed']]);
    expect(store.records.get(1)).toMatchObject({ originalDrivers: { [GPU]: null, [AUDIO]: 'snd_hda_intel' }, originalOverrides: { [GPU]: null, [AUDIO]: null } });
    expect([stateOf(kernel, GPU), stateOf(kernel, AUDIO)]).toEqual([
      { driver: 'vfio-pci', override: 'vfio-pci' },
      { driver: 'vfio-pci', override: 'vfio-pci' },
    ]);
  });

  it('whose resume fails: the group is rolled back to its recorded drivers and the record, only that run\u2019s, is dropped', async () => {
    const kernel = await workstation();
    const store = new MemoryStateStore();
    const { journal, record } = await crashedLegacyPrepare(kernel);
    store.journal = journal;
    store.records.set(1, record);
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY', times: 1 });
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.outcome])).toEqual([[1, 'rolled_back']]);
    expect([stateOf(kernel, GPU).driver, stateOf(kernel, AUDIO).driver]).toEqual([undefined, 'snd_hda_intel']);
    expect([...store.records.keys()]).toEqual([]);
    expect(store.journal).toBeUndefined();
  });
});

describe('the step log', () => {
  it('every step is logged at debug level with its outcome and note', async () => {
    const kernel = await workstation();
    const debug: [unknown, string | undefined][] = [];
    const logger: Logger = { ...silentLogger, debug: (obj: object, msg?: string) => void debug.push([obj, msg]) };
    logger.child = () => logger;
    await engine(kernel, new MemoryStateStore(), { logger }).prepare(sel(GPU), { allowBootGpu: true });
    const steps = debug.filter(([, m]) => m === 'step');
    expect(steps.map(([o]) => {
      const { step, outcome, note } = o as { step: { kind: string }; outcome: string; note?: string };
      return [step.kind, outcome, note];
    })).toEqual([
      ['load-module', 'done', undefined],
      // modprobe vfio-pci pulled vfio_iommu_type1 in (its softdep).
      ['load-module', 'skipped', undefined],
      ...['unbind-vtconsole', 'unbind-framebuffer', 'set-override', 'probe', 'set-override', 'unbind-driver', 'probe', 'verify-group'].map((k) => [k, 'done', undefined]),
    ]);
    expect(steps[0]![0]).toEqual({ step: LOAD_VFIO, outcome: 'done', note: undefined });
  });
});

describe('a run whose writes were all done by someone else between planning and running (server-aspeed-4xh100)', () => {
  it('skips every write, verifies the group, and reports it already prepared: the run changed nothing', async () => {
    const kernel = await servers();
    const store = new MemoryStateStore();
    await kernel.loadModule('vfio-pci');
    const snapshot = await discoverHost(kernel);
    const gpu = snapshot.gpus.find((g) => g.fn.address === H100_A)!;
    const plan = planPrepare(snapshot, [assessGpu(snapshot, gpu, { allowBootGpu: false })]);
    // Another tool moves the H100 to vfio-pci, the way the plan would.
    await kernel.writeText(`sys/bus/pci/devices/${H100_A}/driver_override`, 'vfio-pci');
    kernel.setDriverBinding(H100_A, 'vfio-pci');
    kernel.clearWriteLog();
    const [outcome] = await executor(kernel, store).run(plan);
    expect(outcome!.steps.map((s) => [s.step.kind, s.outcome])).toEqual([
      ['set-override', 'skipped'],
      ['unbind-driver', 'skipped'],
      ['probe', 'skipped'],
      ['verify-group', 'done'],
    ]);
    expect(outcome!.outcome).toBe('already');
    expect(kernel.writeLog).toEqual([]);
  });
});
