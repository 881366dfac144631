/**
 * What `recover()` reports after a crash (an exception escaping the step hook stands in for SIGKILL: nothing
 * after it runs) on workstation-efifb: GPU 0000:01:00.0 (no driver), audio 0000:01:00.1 (snd_hda_intel), group 1.
 * Prepare's steps: 1–2 the preamble's module loads, then unbind-vtconsole, unbind-framebuffer, set-override GPU,
 * probe GPU (step 6), set-override audio, unbind audio, probe audio, verify. Expectations are written here.
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import type { Logger } from '../../../src/core/logger.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore, type JournalGroup } from '../../../src/state/journal.js';

const GPU = '0000:01:00.0' as PciAddress;
const AUDIO = '0000:01:00.1' as PciAddress;
const sel = { all: false as const, selectors: parseSelectors([GPU]) };
class Crash extends Error {}

function engine(kernel: SimulatedKernel, store: MemoryStateStore, opts: { crashAt?: number; logger?: Logger } = {}) {
  return new HandoffEngine({
    host: kernel,
    store,
    clock: realClock,
    logger: opts.logger ?? silentLogger,
    verifyTimeoutMs: 200,
    writeTimeoutMs: 1_000,
    afterStep: (n) => {
      if (n === opts.crashAt) throw new Crash(`crash after step ${n}`);
    },
  });
}
function drivers(kernel: SimulatedKernel) {
  const s = kernel.state();
  return [GPU, AUDIO].map((a) => s.devices.find((d) => d.address === a)!.driver);
}
function capturingLogger(warnings: [object, string | undefined][]): Logger {
  const l: Logger = { ...silentLogger, warn: (obj, msg) => void warnings.push([obj, msg]), child: () => l };
  return l;
}

async function crashedPrepare(crashAt: number) {
  const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
  const store = new MemoryStateStore();
  await expect(engine(kernel, store, { crashAt }).prepare(sel, { allowBootGpu: true })).rejects.toBeInstanceOf(Crash);
  return { kernel, store };
}

describe('recover() after a crashed prepare', () => {
  it('resumes the group from the step after the last journaled one, reports it as resumed, and logs which journal it recovers', async () => {
    const { kernel, store } = await crashedPrepare(6);
    const id = store.journal!.id;
    expect(id).toMatch(/^prepare-/);
    expect(drivers(kernel)).toEqual(['vfio-pci', 'snd_hda_intel']);
    const warnings: [object, string | undefined][] = [];
    const recovered = await engine(kernel, store, { logger: capturingLogger(warnings) }).recover();
    expect(recovered.map((o) => [o.group, o.gpus, o.operation, o.outcome])).toEqual([[1, [GPU], 'prepare', 'resumed']]);
    expect(recovered[0]!.steps.map((s) => [s.step.kind, s.outcome])).toEqual([
      ['set-override', 'done'],
      ['unbind-driver', 'done'],
      ['probe', 'done'],
      ['verify-group', 'done'],
    ]);
    expect(warnings[0]).toEqual([{ journal: id, operation: 'prepare' }, 'recovering an unfinished handoff']);
    expect(drivers(kernel)).toEqual(['vfio-pci', 'vfio-pci']);
    expect(store.journal).toBeUndefined();
  });

  it('a crash after the last step leaves nothing to do: the group is reported already done and nothing is written', async () => {
    const { kernel, store } = await crashedPrepare(10);
    kernel.clearWriteLog();
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.outcome, o.steps])).toEqual([[1, 'already', []]]);
    expect(kernel.writeLog).toEqual([]);
    expect(store.journal).toBeUndefined();
  });

  it('resuming fails and so does the rollback: the outcome says so and the journal is kept for the next run', async () => {
    const { kernel, store } = await crashedPrepare(6);
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    kernel.injectFault({ path: 'sys/bus/pci/drivers/vfio-pci/unbind', errno: 'EIO' });
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.outcome, o.error?.code, o.rollbackError?.code])).toEqual([[1, 'rollback_failed', 'HOST_WRITE_FAILED', 'ROLLBACK_FAILED']]);
    expect(store.journal?.groups.map((g) => g.status)).toEqual(['failed']);
  });
});

describe('recover() after a crashed release', () => {
  it('resumes the release and reports it as resumed; the group ends on exactly its original drivers', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    const store = new MemoryStateStore();
    await engine(kernel, store).prepare(sel, { allowBootGpu: true });
    // Release: clear-override GPU, unbind GPU, clear-override audio (step 3), unbind audio, probe audio, verify, framebuffer, console.
    await expect(engine(kernel, store, { crashAt: 3 }).release(sel)).rejects.toBeInstanceOf(Crash);
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.gpus, o.operation, o.outcome])).toEqual([[1, [GPU], 'release', 'resumed']]);
    expect(recovered[0]!.steps.map((s) => s.step.kind)).toEqual(['unbind-driver', 'probe', 'verify-group', 'bind-framebuffer', 'bind-vtconsole']);
    expect(drivers(kernel)).toEqual([undefined, 'snd_hda_intel']);
    expect(store.journal).toBeUndefined();
    expect([...store.records.keys()]).toEqual([]);
  });
});

describe('recover() of a run that died with two groups mid-rollback', () => {
  it('rolls back each failed group to its own state before the run (server-aspeed-4xh100: H100s 0000:18:00.0, group 31, and 0000:3b:00.0, group 45, on nvidia)', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
    const both = { all: false as const, selectors: parseSelectors(['0000:18:00.0', '0000:3b:00.0']) };
    // The dead run had moved both to vfio-pci (its own state dir is the one below).
    await engine(kernel, new MemoryStateStore()).prepare(both, { allowBootGpu: false });
    const failed = (group: number, address: string): JournalGroup => ({
      group,
      record: { group, gpus: [address as PciAddress], originalDrivers: { [address]: 'nvidia' }, originalOverrides: { [address]: null }, framebuffers: [], vtconsoles: [] },
      steps: [],
      completed: 2,
      status: 'failed',
      before: { [address]: { driver: 'nvidia', override: null } },
    });
    const store = new MemoryStateStore();
    store.journal = { version: 1, id: 'prepare-dead', operation: 'prepare', pid: 1, startedAt: 0, preamble: { steps: [], completed: 0 }, groups: [failed(31, '0000:18:00.0'), failed(45, '0000:3b:00.0')] };
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.outcome, o.steps, o.rollbackError])).toEqual([
      [31, 'rolled_back', [], undefined],
      [45, 'rolled_back', [], undefined],
    ]);
    const s = kernel.state();
    expect(['0000:18:00.0', '0000:3b:00.0'].map((a) => s.devices.find((d) => d.address === a)!.driver)).toEqual(['nvidia', 'nvidia']);
    // Each rollback is journaled as it completes (a crash between the two must not roll back the first again).
    expect(store.journalWrites.map((j) => j.groups.map((g) => g.status))).toEqual([
      ['rolled-back', 'failed'],
      ['rolled-back', 'rolled-back'],
    ]);
    expect(store.journalWrites.at(-1)!.groups).toEqual([
      { ...failed(31, '0000:18:00.0'), status: 'rolled-back' },
      { ...failed(45, '0000:3b:00.0'), status: 'rolled-back' },
    ]);
    expect(store.journal).toBeUndefined();
  });

  it('one of two rollbacks fails: the other group is rolled back, and the journal is kept for the one that failed', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
    const both = { all: false as const, selectors: parseSelectors(['0000:18:00.0', '0000:3b:00.0']) };
    await engine(kernel, new MemoryStateStore()).prepare(both, { allowBootGpu: false });
    const failed = (group: number, address: string): JournalGroup => ({
      group,
      record: { group, gpus: [address as PciAddress], originalDrivers: { [address]: 'nvidia' }, originalOverrides: { [address]: null }, framebuffers: [], vtconsoles: [] },
      steps: [],
      completed: 2,
      status: 'failed',
      before: { [address]: { driver: 'nvidia', override: null } },
    });
    const store = new MemoryStateStore();
    store.journal = { version: 1, id: 'prepare-dead', operation: 'prepare', pid: 1, startedAt: 0, preamble: { steps: [], completed: 0 }, groups: [failed(31, '0000:18:00.0'), failed(45, '0000:3b:00.0')] };
    // Only the first unbind from vfio-pci (group 31's) fails.
    kernel.injectFault({ path: 'sys/bus/pci/drivers/vfio-pci/unbind', errno: 'EIO', times: 1 });
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.outcome])).toEqual([
      [31, 'rollback_failed'],
      [45, 'rolled_back'],
    ]);
    expect(store.journal?.groups.map((g) => [g.group, g.status])).toEqual([
      [31, 'failed'],
      [45, 'rolled-back'],
    ]);
  });

  it('a rollback that fails again is reported as rollback_failed with what failed, and the journal is kept', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
    const one = { all: false as const, selectors: parseSelectors(['0000:18:00.0']) };
    await engine(kernel, new MemoryStateStore()).prepare(one, { allowBootGpu: false });
    const store = new MemoryStateStore();
    const group: JournalGroup = {
      group: 31,
      record: { group: 31, gpus: ['0000:18:00.0' as PciAddress], originalDrivers: { '0000:18:00.0': 'nvidia' }, originalOverrides: { '0000:18:00.0': null }, framebuffers: [], vtconsoles: [] },
      steps: [],
      completed: 2,
      status: 'failed',
      before: { '0000:18:00.0': { driver: 'nvidia', override: null } },
    };
    store.journal = { version: 1, id: 'prepare-dead', operation: 'prepare', pid: 1, startedAt: 0, preamble: { steps: [], completed: 0 }, groups: [group] };
    kernel.injectFault({ path: 'sys/bus/pci/drivers/vfio-pci/unbind', errno: 'EIO' });
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.gpus, o.operation, o.outcome, o.steps, o.rollbackError?.code])).toEqual([
      [31, ['0000:18:00.0'], 'prepare', 'rollback_failed', [], 'ROLLBACK_FAILED'],
    ]);
    expect(recovered[0]!.rollbackError!.message).toMatch(
      /^rollback of group 31 did not complete — unbind 0000:18:00\.0 from vfio-pci: .*; .*The group is not as it was before \(it may be half-bound\): 0000:18:00\.0 on vfio-pci\. /,
    );
    expect(store.journal?.groups).toEqual([group]);
  });
});

describe('a failed second prepare', () => {
  it('keeps the first prepare\u2019s record (it still describes the GPU that prepare moved), so release gives everything back', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    const store = new MemoryStateStore();
    await engine(kernel, store).prepare(sel, { allowBootGpu: true });
    // Someone gave the audio back by hand; the second prepare fails to take it again and rolls back.
    kernel.setDriverBinding(AUDIO, 'snd_hda_intel');
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY', times: 1 });
    const second = await engine(kernel, store).prepare(sel, { allowBootGpu: true });
    expect(second.outcomes.map((o) => o.outcome)).toEqual(['rolled_back']);
    expect(drivers(kernel)).toEqual(['vfio-pci', 'snd_hda_intel']);
    expect(store.records.get(1)?.originalDrivers).toEqual({ [GPU]: null, [AUDIO]: 'snd_hda_intel' });
    await engine(kernel, store).release(sel);
    expect(drivers(kernel)).toEqual([undefined, 'snd_hda_intel']);
    expect([...store.records.keys()]).toEqual([]);
  });
});

describe('recover() without a journal', () => {
  it('has nothing to report and writes nothing', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    const store = new MemoryStateStore();
    expect(await engine(kernel, store).recover()).toEqual([]);
    expect(kernel.writeLog).toEqual([]);
    expect(store.journalWrites).toEqual([]);
  });
});
