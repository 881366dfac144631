/**
 * The executor's rollback and recovery decisions where the host itself misbehaves, on workstation-efifb
 * (boot GPU 0000:01:00.0 without a driver under efifb + fbcon, HDMI audio 0000:01:00.1 on snd_hda_intel, IOMMU
 * group 1 with the root port). Every expectation is written here: the step lists from the driver-core order,
 * the messages from what the README promises for `rollback_failed` (what failed, every function as it is now).
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { discoverHost } from '../../../src/host/discover.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { errorInfo, HandoffExecutor, type StepEvent } from '../../../src/handoff/executor.js';
import { planPrepare } from '../../../src/handoff/plan.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { assessGpu } from '../../../src/handoff/verdict.js';
import { noopHandoffRecorder } from '../../../src/metrics/recorders.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore, type Journal } from '../../../src/state/journal.js';

const GPU = '0000:01:00.0' as PciAddress;
const AUDIO = '0000:01:00.1' as PciAddress;
const sel = { all: false as const, selectors: parseSelectors([GPU]) };
const TIMEOUTS = { verifyTimeoutMs: 200, writeTimeoutMs: 1_000 };

async function host() {
  return new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
}
function drivers(kernel: SimulatedKernel) {
  const s = kernel.state();
  return [GPU, AUDIO].map((a) => {
    const d = s.devices.find((x) => x.address === a);
    return d ? [d.driver, d.driverOverride] : 'gone';
  });
}

describe('executor: the host cannot be read during a rollback', () => {
  it('the rollback reports its re-read as the failed step, the outcome is rollback_failed with the state unknown, and the journal is kept', async () => {
    const kernel = await host();
    const store = new MemoryStateStore();
    const snapshot = await discoverHost(kernel);
    const gpu = snapshot.gpus.find((g) => g.fn.address === GPU)!;
    const plan = planPrepare(snapshot, [assessGpu(snapshot, gpu, { allowBootGpu: true })]);
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    const executor = new HandoffExecutor({
      host: kernel,
      store,
      clock: realClock,
      logger: silentLogger,
      recorder: noopHandoffRecorder,
      discover: () => Promise.reject(new Error('sysfs unreadable')),
      ...TIMEOUTS,
    });
    const [outcome] = await executor.run(plan);
    expect(outcome!.outcome).toBe('rollback_failed');
    expect(outcome!.error?.code).toBe('HOST_WRITE_FAILED');
    expect(outcome!.rollback).toEqual([
      { step: { kind: 'verify-group', group: 1, expect: 'host', members: [] }, outcome: 'failed', error: { code: 'INTERNAL', message: 'sysfs unreadable' } },
    ]);
    expect(outcome!.rollbackError).toEqual({
      code: 'ROLLBACK_FAILED',
      message:
        'rollback of group 1 did not complete — verify group 1 is back on the host (no vfio-pci, no /dev/vfio/1): sysfs unreadable. ' +
        'The group is not as it was before (it may be half-bound): unknown (sysfs unreadable). The journal is kept; the next prepare/release retries the rollback.',
    });
    // Half-bound, as the message says: the GPU moved before the audio's unbind failed.
    expect(drivers(kernel)).toEqual([
      ['vfio-pci', 'vfio-pci'],
      ['snd_hda_intel', 'vfio-pci'],
    ]);
    expect(store.journal?.groups.map((g) => g.status)).toEqual(['failed']);
  });
});

describe('executor: a function vanishes before the rollback, and the rollback fails', () => {
  it('the vanished function is skipped, the message names it as gone and the other as it stands; each step is announced with its group and whether it is a rollback', async () => {
    const kernel = await host();
    const store = new MemoryStateStore();
    const events: string[] = [];
    const onStep = (e: StepEvent) => {
      events.push(`${e.phase} ${e.group ?? '-'} ${e.step.kind}${e.rollback ? ' rollback' : ''}${e.phase === 'end' ? ` ${e.outcome.outcome}` : ''}`);
      // Hot-unplugged right after its unbind failed.
      if (e.phase === 'end' && !e.rollback && e.outcome.outcome === 'failed') kernel.removeDevice(AUDIO);
    };
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    kernel.injectFault({ path: 'sys/bus/pci/drivers/vfio-pci/unbind', errno: 'EIO' });
    const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, onStep, ...TIMEOUTS });
    const report = await sut.prepare(sel, { allowBootGpu: true });
    const [outcome] = report.outcomes;
    expect(outcome!.outcome).toBe('rollback_failed');
    expect(outcome!.rollback!.map((s) => [s.step.kind, s.outcome])).toEqual([
      ['clear-override', 'done'],
      ['unbind-driver', 'failed'],
      // The GPU had no driver before: nothing to probe. vfio-pci took the firmware framebuffer for good
      // (kernel 6.12, FRAMEBUFFER_NOT_RESTORABLE): its rebind and fbcon's are skipped, not failed.
      ['verify-group', 'failed'],
      ['bind-framebuffer', 'skipped'],
      ['bind-vtconsole', 'skipped'],
    ]);
    expect(outcome!.rollbackError?.message).toMatch(
      /^rollback of group 1 did not complete — unbind 0000:01:00\.0 from vfio-pci: .*EIO.*\. The group is not as it was before \(it may be half-bound\): 0000:01:00\.0 on vfio-pci, 0000:01:00\.1 is gone\. /,
    );
    expect(drivers(kernel)).toEqual([['vfio-pci', undefined], 'gone']);
    expect(events).toEqual([
      // vfio-pci, then vfio_iommu_type1: modprobe's softdep already pulled the second in.
      'start - load-module',
      'end - load-module done',
      'start - load-module',
      'end - load-module skipped',
      ...['unbind-vtconsole', 'unbind-framebuffer', 'set-override', 'probe', 'set-override'].flatMap((k) => [`start 1 ${k}`, `end 1 ${k} done`]),
      'start 1 unbind-driver',
      'end 1 unbind-driver failed',
      ...['clear-override done', 'unbind-driver failed', 'verify-group failed', 'bind-framebuffer skipped', 'bind-vtconsole skipped'].flatMap((k) => [
        `start 1 ${k.split(' ')[0]} rollback`,
        `end 1 ${k.split(' ')[0]} rollback ${k.split(' ')[1]}`,
      ]),
    ]);
  });
});

describe('executor: journals written before `before` was kept', () => {
  /** A journal of an older version: the group failed, no per-function `before`, so the rollback plans from the record. */
  function legacyJournal(operation: 'prepare' | 'release'): Journal {
    return {
      version: 1,
      id: `${operation}-legacy`,
      operation,
      pid: 1,
      startedAt: 0,
      preamble: { steps: [], completed: 0 },
      groups: [
        {
          group: 1,
          record: { group: 1, gpus: [GPU], originalDrivers: { [GPU]: null, [AUDIO]: 'snd_hda_intel' }, originalOverrides: { [GPU]: null, [AUDIO]: null }, framebuffers: [], vtconsoles: [] },
          steps: [],
          completed: 0,
          status: 'failed',
        },
      ],
    };
  }

  it('a failed prepare is rolled back to the recorded original drivers', async () => {
    const kernel = await host();
    const store = new MemoryStateStore();
    const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, ...TIMEOUTS });
    await sut.prepare(sel, { allowBootGpu: true });
    // The crashed run had moved only the GPU.
    kernel.setDriverBinding(AUDIO, 'snd_hda_intel');
    store.journal = legacyJournal('prepare');
    const recovered = await sut.recover();
    expect(recovered.map((o) => [o.group, o.outcome])).toEqual([[1, 'rolled_back']]);
    expect(drivers(kernel)).toEqual([
      [undefined, undefined],
      ['snd_hda_intel', undefined],
    ]);
    expect(store.journal).toBeUndefined();
  });

  it('a failed release is rolled back onto vfio-pci', async () => {
    const kernel = await host();
    const store = new MemoryStateStore();
    const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, ...TIMEOUTS });
    await sut.prepare(sel, { allowBootGpu: true });
    // The crashed release had given the audio back already.
    kernel.setDriverBinding(AUDIO, 'snd_hda_intel');
    store.journal = legacyJournal('release');
    const recovered = await sut.recover();
    expect(recovered.map((o) => [o.group, o.outcome])).toEqual([[1, 'rolled_back']]);
    expect(drivers(kernel)).toEqual([
      ['vfio-pci', 'vfio-pci'],
      ['vfio-pci', 'vfio-pci'],
    ]);
    expect(store.journal).toBeUndefined();
  });
});

describe('errorInfo', () => {
  it('keeps a HandoffError code, calls any other Error INTERNAL, and turns a thrown non-Error into its string', () => {
    class Typed extends HandoffError {
      readonly code = 'HOST_WRITE_FAILED';
    }
    expect(errorInfo(new Typed('write failed'))).toEqual({ code: 'HOST_WRITE_FAILED', message: 'write failed' });
    expect(errorInfo(new TypeError('x is undefined'))).toEqual({ code: 'INTERNAL', message: 'x is undefined' });
    expect(errorInfo('plain string')).toEqual({ code: 'INTERNAL', message: 'plain string' });
    expect(errorInfo(42)).toEqual({ code: 'INTERNAL', message: '42' });
  });
});

describe('executor: the module load before any group fails', () => {
  it('every group fails with the failed load as its only step, nothing of the group is written, and no journal is left behind', async () => {
    const kernel = await host();
    const store = new MemoryStateStore();
    kernel.injectFault({ path: 'modprobe:vfio-pci', errno: 'EIO' });
    const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, ...TIMEOUTS });
    const report = await sut.prepare(sel, { allowBootGpu: true });
    expect(report.outcomes).toHaveLength(1);
    const [outcome] = report.outcomes;
    expect([outcome!.group, outcome!.gpus, outcome!.operation, outcome!.outcome, outcome!.error?.code]).toEqual([1, [GPU], 'prepare', 'failed', 'HOST_WRITE_FAILED']);
    expect(outcome!.steps.map((s) => [s.step, s.outcome])).toEqual([[{ kind: 'load-module', module: 'vfio-pci' }, 'failed']]);
    expect(outcome!.rollback).toBeUndefined();
    expect(kernel.writeLog.map((e) => [e.kind, e.path, e.outcome])).toEqual([['modprobe', 'vfio-pci', 'error']]);
    expect(drivers(kernel)).toEqual([
      [undefined, undefined],
      ['snd_hda_intel', undefined],
    ]);
    expect(store.journal).toBeUndefined();
    expect([...store.records.keys()]).toEqual([]);
  });
});

describe('executor: a write that never returns', () => {
  it('the journal keeps the group failed with what hung (the timeout message), the device and when', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
    const store = new MemoryStateStore();
    const t0 = Date.now();
    kernel.injectHang({ path: 'sys/bus/pci/devices/0000:18:00.0/driver_override' });
    const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 300 });
    const report = await sut.prepare({ all: false, selectors: parseSelectors(['0000:18:00.0']) }, { allowBootGpu: false });
    const message = report.outcomes[0]!.error!.message;
    expect(message).toMatch(/did not return within 300 ms; the kernel may still be stuck in it, so nothing more is written to 0000:18:00\.0$/);
    const hung = store.journal!.groups[0]!.hung!;
    expect([store.journal!.groups[0]!.status, hung.what, hung.target]).toEqual(['failed', message, '0000:18:00.0']);
    expect(hung.at).toBeGreaterThanOrEqual(t0);
    expect(hung.at).toBeLessThanOrEqual(Date.now());
    kernel.releaseHangs();
  });
});

describe('executor: a run whose only step that ran is a verification', () => {
  it('changed nothing, so the group is reported already prepared', async () => {
    const kernel = await host();
    const store = new MemoryStateStore();
    await new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, ...TIMEOUTS }).prepare(sel, { allowBootGpu: true });
    kernel.clearWriteLog();
    const executor = new HandoffExecutor({ host: kernel, store, clock: realClock, logger: silentLogger, recorder: noopHandoffRecorder, discover: () => discoverHost(kernel), ...TIMEOUTS });
    const record = (await store.readRecords()).get(1)!;
    const verify = { kind: 'verify-group' as const, group: 1, expect: 'vfio' as const, members: [GPU, AUDIO] };
    const [outcome] = await executor.run({ operation: 'prepare', preamble: [], groups: [{ group: 1, gpus: [GPU], steps: [verify], record }] });
    expect([outcome!.outcome, outcome!.steps.map((s) => [s.step.kind, s.outcome])]).toEqual(['already', [['verify-group', 'done']]]);
    expect(kernel.writeLog).toEqual([]);
  });
});

describe('executor: the rollback is logged', () => {
  it('with the group, the operation and how many rollback steps failed', async () => {
    const kernel = await host();
    const warnings: [object, string | undefined][] = [];
    const errors: [object, string | undefined][] = [];
    const logger = { ...silentLogger, warn: (obj: object, msg?: string) => void warnings.push([obj, msg]), error: (obj: object, msg?: string) => void errors.push([obj, msg]) };
    logger.child = () => logger;
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    const report = await new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger, ...TIMEOUTS }).prepare(sel, { allowBootGpu: true });
    expect(warnings.filter(([, m]) => m === 'rolled back group')).toEqual([[{ group: 1, operation: 'prepare', failed: 0 }, 'rolled back group']]);
    // The failed step is logged as an error with the step and its error code and message.
    expect(errors).toEqual([[{ step: { kind: 'unbind-driver', address: AUDIO, driver: 'snd_hda_intel' }, err: report.outcomes[0]!.error }, 'step failed']]);
    expect(report.outcomes[0]!.error?.code).toBe('HOST_WRITE_FAILED');

    const again = await host();
    warnings.length = 0;
    again.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    again.injectFault({ path: 'sys/bus/pci/drivers/vfio-pci/unbind', errno: 'EIO' });
    await new HandoffEngine({ host: again, store: new MemoryStateStore(), clock: realClock, logger, ...TIMEOUTS }).prepare(sel, { allowBootGpu: true });
    // The GPU's unbind from vfio-pci and the verification after it fail.
    expect(warnings.filter(([, m]) => m === 'rolled back group')).toEqual([[{ group: 1, operation: 'prepare', failed: 2 }, 'rolled back group']]);
  });
});

describe('executor: metrics of a rollback that failed', () => {
  it('the group counts as a failure with the step error code, and the run time is recorded in seconds', async () => {
    const kernel = await host();
    const finished: [string, string, string, number][] = [];
    const steps: string[] = [];
    const recorder = {
      stepCompleted: (kind: string, outcome: string) => void steps.push(`${kind} ${outcome}`),
      handoffFinished: (op: 'prepare' | 'release', result: string, reason: string, seconds: number) => void finished.push([op, result, reason, seconds]),
    };
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    kernel.injectFault({ path: 'sys/bus/pci/drivers/vfio-pci/unbind', errno: 'EIO' });
    const t0 = Date.now();
    const report = await new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, recorder, ...TIMEOUTS }).prepare(sel, { allowBootGpu: true });
    const elapsed = (Date.now() - t0) / 1000;
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['rollback_failed']);
    expect(finished.map(([op, result, reason]) => [op, result, reason])).toEqual([['prepare', 'failure', 'HOST_WRITE_FAILED']]);
    expect(finished[0]![3]).toBeGreaterThan(0);
    expect(finished[0]![3]).toBeLessThanOrEqual(elapsed);
    expect(steps.filter((s) => s.endsWith('failed'))).toEqual(['unbind-driver failed', 'unbind-driver failed', 'verify-group failed']);
    // Both failed rollback steps are named, one after the other.
    expect(report.outcomes[0]!.rollbackError!.message).toMatch(
      /^rollback of group 1 did not complete — unbind 0000:01:00\.0 from vfio-pci: [^;]+; verify group 1 is back on the host \(no vfio-pci, no \/dev\/vfio\/1\): [^;]+\. The group is not as it was before/,
    );
  });
});

describe('executor: the rollback cannot clear an override', () => {
  it('rollback_failed shows a function left without a driver but with its override', async () => {
    const kernel = await host();
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    const onStep = (e: StepEvent) => {
      // From the failure on, the GPU's driver_override cannot be written.
      if (e.phase === 'end' && !e.rollback && e.outcome.outcome === 'failed') kernel.injectFault({ path: `sys/bus/pci/devices/${GPU}/driver_override`, errno: 'EIO' });
    };
    const report = await new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, onStep, ...TIMEOUTS }).prepare(sel, { allowBootGpu: true });
    const [outcome] = report.outcomes;
    expect(outcome!.outcome).toBe('rollback_failed');
    // The unbind from vfio-pci still works and the override alone binds nothing: the verification passes.
    expect(outcome!.rollback!.filter((s) => s.outcome === 'failed').map((s) => s.step.kind)).toEqual(['clear-override']);
    expect(outcome!.rollbackError!.message).toMatch(
      /^rollback of group 1 did not complete — clear driver_override of 0000:01:00\.0: [^;]+\. The group is not as it was before \(it may be half-bound\): 0000:01:00\.0 on no driver \(driver_override vfio-pci\), 0000:01:00\.1 on snd_hda_intel\. /,
    );
  });
});

describe('executor: a device whose write hung is not written again', () => {
  it('the refused step counts as a failed step in the metrics', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
    const steps: string[] = [];
    const recorder = { stepCompleted: (kind: string, outcome: string) => void steps.push(`${kind} ${outcome}`), handoffFinished: () => undefined };
    kernel.injectHang({ path: 'sys/bus/pci/devices/0000:18:00.0/driver_override' });
    const sut = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, recorder, verifyTimeoutMs: 200, writeTimeoutMs: 300 });
    const one = { all: false as const, selectors: parseSelectors(['0000:18:00.0']) };
    await sut.prepare(one, { allowBootGpu: false });
    steps.length = 0;
    const again = await sut.prepare(one, { allowBootGpu: false });
    expect(again.outcomes[0]!.error?.message).toMatch(/^not writing to 0000:18:00\.0: an earlier write to it did not return/);
    expect(steps).toContain('set-override failed');
    kernel.releaseHangs();
  });
});

describe('executor: the record a prepare stores merges an earlier one', () => {
  const earlier = (overrides?: Record<string, string | null>) => ({
    group: 1,
    gpus: [GPU],
    originalDrivers: { [GPU]: null, [AUDIO]: 'snd_hda_intel' },
    ...(overrides ? { originalOverrides: overrides } : {}),
    framebuffers: [],
    vtconsoles: [],
  });

  it('an earlier record\u2019s override wins for the functions it knows', async () => {
    const kernel = await host();
    const store = new MemoryStateStore();
    store.records.set(1, earlier({ [GPU]: null, [AUDIO]: 'snd_hda_intel' }));
    const report = await new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, ...TIMEOUTS }).prepare(sel, { allowBootGpu: true });
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    expect(store.records.get(1)?.originalOverrides).toEqual({ [GPU]: null, [AUDIO]: 'snd_hda_intel' });
  });

  it('a prepare that rolls back keeps a stored record that differs from its own in any function', async () => {
    const kernel = await host();
    const store = new MemoryStateStore();
    // Our earlier prepare moved the GPU (bound to vfio-pci without an override now); the audio went back by hand.
    kernel.setDriverBinding(GPU, 'vfio-pci');
    store.records.set(1, earlier({ [GPU]: null, [AUDIO]: null }));
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    const report = await new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, ...TIMEOUTS }).prepare(sel, { allowBootGpu: true });
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['rolled_back']);
    // This run alone would have recorded the GPU as on vfio-pci; the stored record says "no driver" and must stay.
    expect(store.records.get(1)).toMatchObject({ originalDrivers: { [GPU]: null, [AUDIO]: 'snd_hda_intel' }, originalOverrides: { [GPU]: null, [AUDIO]: null } });
  });

  it('a prepare that rolls back keeps a stored record whose drivers match its own but whose overrides do not', async () => {
    const kernel = await host();
    const store = new MemoryStateStore();
    store.records.set(1, earlier({ [GPU]: null, [AUDIO]: 'snd_hda_intel' }));
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    const report = await new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, ...TIMEOUTS }).prepare(sel, { allowBootGpu: true });
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['rolled_back']);
    expect(store.records.get(1)?.originalOverrides).toEqual({ [GPU]: null, [AUDIO]: 'snd_hda_intel' });
  });

  it('an earlier legacy record (no overrides) merges as unset overrides', async () => {
    const kernel = await host();
    const store = new MemoryStateStore();
    store.records.set(1, earlier());
    const report = await new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, ...TIMEOUTS }).prepare(sel, { allowBootGpu: true });
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    expect(store.records.get(1)).toMatchObject({ originalDrivers: { [GPU]: null, [AUDIO]: 'snd_hda_intel' }, originalOverrides: { [GPU]: null, [AUDIO]: null } });
  });
});
