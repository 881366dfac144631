/**
 * Rollback decisions of the executor, with the end state written here from the host profile
 * (workstation-efifb: GPU 0000:01:00.0 without a driver, audio 0000:01:00.1 on snd_hda_intel, group 1):
 * a failed prepare goes back to exactly the drivers the group had and forgets the group; a failed release
 * goes back to vfio-pci and keeps what it needs to release later; a run that died in the middle of a
 * rollback is rolled back by the next one.
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore, type Journal } from '../../../src/state/journal.js';

const GPU = '0000:01:00.0';
const AUDIO = '0000:01:00.1';
const sel = { all: false as const, selectors: parseSelectors([GPU]) };

function engine(kernel: SimulatedKernel, store: MemoryStateStore): HandoffEngine {
  return new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 1_000 });
}

function group1(kernel: SimulatedKernel) {
  const s = kernel.state();
  const dev = (a: string) => s.devices.find((d) => d.address === a)!;
  return { drivers: [dev(GPU).driver, dev(AUDIO).driver], overrides: [dev(GPU).driverOverride, dev(AUDIO).driverOverride], node: s.vfioGroups.includes(1) };
}
const ON_HOST = { drivers: [undefined, 'snd_hda_intel'], overrides: [undefined, undefined], node: false };
const ON_VFIO = { drivers: ['vfio-pci', 'vfio-pci'], overrides: ['vfio-pci', 'vfio-pci'], node: true };
/** What prepare must remember to give the group back: the drivers before it (none for the GPU). */
const ORIGINALS = { [GPU]: null, [AUDIO]: 'snd_hda_intel' };

async function setup() {
  const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
  const store = new MemoryStateStore();
  return { kernel, store, sut: engine(kernel, store) };
}

describe('rollback', () => {
  it('a prepare remembers the original drivers; its release restores them and forgets the group', async () => {
    const { kernel, store, sut } = await setup();
    await sut.prepare(sel, { allowBootGpu: true });
    expect(group1(kernel)).toEqual(ON_VFIO);
    expect((await sut.records()).get(1)?.originalDrivers).toEqual(ORIGINALS);
    await sut.release(sel);
    expect(group1(kernel)).toEqual(ON_HOST);
    expect([...(await sut.records()).keys()]).toEqual([]);
    expect(store.journal).toBeUndefined();
  });

  it('a second prepare keeps the first one\u2019s originals (not "vfio-pci")', async () => {
    const { kernel, sut } = await setup();
    await sut.prepare(sel, { allowBootGpu: true });
    // Someone gave the audio function back by hand; prepare takes it again.
    kernel.setDriverBinding(AUDIO, 'snd_hda_intel');
    await sut.prepare(sel, { allowBootGpu: true });
    expect(group1(kernel).drivers).toEqual(['vfio-pci', 'vfio-pci']);
    expect((await sut.records()).get(1)?.originalDrivers).toEqual(ORIGINALS);
    await sut.release(sel);
    expect(group1(kernel)).toEqual(ON_HOST);
  });

  it('a failed prepare goes back to exactly the original drivers and forgets the group', async () => {
    const { kernel, store, sut } = await setup();
    kernel.injectFault({ path: `sys/bus/pci/drivers/snd_hda_intel/unbind`, errno: 'EBUSY' });
    const report = await sut.prepare(sel, { allowBootGpu: true });
    expect(report.outcomes.map((o) => [o.outcome, o.error?.code])).toEqual([['rolled_back', 'HOST_WRITE_FAILED']]);
    expect(report.outcomes[0]!.rollback!.every((s) => s.outcome !== 'failed')).toBe(true);
    expect(group1(kernel)).toEqual(ON_HOST);
    expect([...(await sut.records()).keys()]).toEqual([]);
    expect(store.journal).toBeUndefined();
  });

  it('a failed release goes back to vfio-pci, keeps the record, and a later release restores the originals', async () => {
    const { kernel, store, sut } = await setup();
    await sut.prepare(sel, { allowBootGpu: true });
    // The first probe of the release (the GPU back to the host) fails.
    kernel.injectFault({ path: 'sys/bus/pci/drivers_probe', errno: 'EIO', times: 1 });
    const report = await sut.release(sel);
    expect(report.outcomes.map((o) => [o.outcome, o.error?.code])).toEqual([['rolled_back', 'HOST_WRITE_FAILED']]);
    // The rollback puts every function of the group back as it was before the run (GPU and audio, each on
    // vfio-pci with its override; the audio's steps find it already there).
    expect(report.outcomes[0]!.rollback!.map((s) => s.step.kind)).toEqual(['set-override', 'probe', 'set-override', 'probe', 'verify-group']);
    expect(group1(kernel)).toEqual(ON_VFIO);
    expect((await sut.records()).get(1)?.originalDrivers).toEqual(ORIGINALS);
    expect(store.journal).toBeUndefined();
    await sut.release(sel);
    expect(group1(kernel)).toEqual(ON_HOST);
  });

  it('a run that died during its rollback is rolled back by the next run', async () => {
    const { kernel, store } = await setup();
    /** Dies (like SIGKILL: nothing after it runs) right after journaling that the group failed. */
    class DiesAfterFailure extends MemoryStateStore {
      override async writeJournal(journal: Journal): Promise<void> {
        await super.writeJournal(journal);
        if (journal.groups.some((g) => g.status === 'failed')) throw new Error('killed before the rollback');
      }
    }
    const dying = new DiesAfterFailure();
    kernel.injectFault({ path: `sys/bus/pci/drivers/snd_hda_intel/unbind`, errno: 'EBUSY' });
    await expect(engine(kernel, dying).prepare(sel, { allowBootGpu: true })).rejects.toThrow('killed before the rollback');
    // Half-way: the GPU is on vfio-pci, the audio is not.
    expect(group1(kernel).drivers).toEqual(['vfio-pci', 'snd_hda_intel']);
    store.journal = dying.journal;
    store.records = dying.records;
    const recovered = await engine(kernel, store).recover();
    expect(recovered.map((o) => [o.group, o.outcome])).toEqual([[1, 'rolled_back']]);
    expect(group1(kernel)).toEqual(ON_HOST);
    expect(store.journal).toBeUndefined();
    expect([...store.records.keys()]).toEqual([]);
  });

  it('a crash before the group started leaves it alone: recover changes nothing', async () => {
    const { kernel, store } = await setup();
    class Crash extends Error {}
    const crashing = new HandoffEngine({
      host: kernel,
      store,
      clock: realClock,
      logger: silentLogger,
      afterStep: (n) => {
        if (n === 1) throw new Crash();
      },
    });
    await expect(crashing.prepare(sel, { allowBootGpu: true })).rejects.toBeInstanceOf(Crash);
    const writes = kernel.writeLog.length;
    expect(await engine(kernel, store).recover()).toEqual([]);
    expect(kernel.writeLog.length).toBe(writes);
    expect(group1(kernel)).toEqual(ON_HOST);
    expect(store.journal).toBeUndefined();
  });
});
