/**
 * What a prepare/release tells the metrics (README: vfio_handoff_* counters feed the alert rules): one
 * `handoffFinished` per group with its result (success, noop, rolled_back, failure) and error code, and one
 * `stepCompleted` per step run, rollback steps included. Host: workstation-efifb (boot GPU + audio, group 1).
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import type { HandoffRecorder } from '../../../src/metrics/recorders.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

class Recording implements HandoffRecorder {
  readonly finished: [string, string, string][] = [];
  readonly steps: string[] = [];
  handoffFinished(operation: 'prepare' | 'release', result: string, reason: string, seconds: number): void {
    expect(seconds).toBeGreaterThanOrEqual(0);
    expect(seconds).toBeLessThan(600);
    this.finished.push([operation, result, reason]);
  }
  stepCompleted(step: string, outcome: string): void {
    this.steps.push(`${step}:${outcome}`);
  }
}

const sel = { all: false as const, selectors: parseSelectors(['0000:01:00.0']) };

async function setup() {
  const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
  const recorder = new Recording();
  const store = new MemoryStateStore();
  const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, recorder, verifyTimeoutMs: 200, writeTimeoutMs: 1_000 });
  return { kernel, recorder, sut };
}

describe('handoff metrics from the engine', () => {
  it('a prepare that changes the group: success, every step done; again: noop, no step run', async () => {
    const { recorder, sut } = await setup();
    await sut.prepare(sel, { allowBootGpu: true });
    expect(recorder.finished).toEqual([['prepare', 'success', 'none']]);
    expect(recorder.steps).toEqual([
      'load-module:done',
      // vfio_iommu_type1 came with vfio-pci (vfio's softdep): planned, found loaded, skipped.
      'load-module:skipped',
      'unbind-vtconsole:done',
      'unbind-framebuffer:done',
      'set-override:done',
      'probe:done',
      'set-override:done',
      'unbind-driver:done',
      'probe:done',
      'verify-group:done',
    ]);
    recorder.steps.length = 0;
    await sut.prepare(sel, { allowBootGpu: true });
    expect(recorder.finished.at(-1)).toEqual(['prepare', 'noop', 'none']);
    expect(recorder.steps).toEqual([]);
    await sut.release(sel);
    expect(recorder.finished.at(-1)).toEqual(['release', 'success', 'none']);
  });

  it('a failed step: rolled_back with the error code, the failed step and the rollback steps counted', async () => {
    const { kernel, recorder, sut } = await setup();
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    const report = await sut.prepare(sel, { allowBootGpu: true });
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['rolled_back']);
    expect(recorder.finished).toEqual([['prepare', 'rolled_back', 'HOST_WRITE_FAILED']]);
    expect(recorder.steps.slice(0, 8)).toEqual([
      'load-module:done',
      'load-module:skipped',
      'unbind-vtconsole:done',
      'unbind-framebuffer:done',
      'set-override:done',
      'probe:done',
      'set-override:done',
      'unbind-driver:failed',
    ]);
    // Then the rollback: every endpoint's override cleared, the GPU off vfio-pci, the group verified back.
    expect(recorder.steps.slice(8)).toEqual(expect.arrayContaining(['clear-override:done', 'unbind-driver:done', 'verify-group:done']));
  });

  it('vfio-pci cannot be loaded: failure for every group, nothing else run', async () => {
    const { kernel, recorder, sut } = await setup();
    kernel.injectFault({ path: 'modprobe:vfio-pci', errno: 'EIO' });
    const report = await sut.prepare(sel, { allowBootGpu: true });
    expect(report.outcomes.map((o) => [o.outcome, o.error?.code])).toEqual([['failed', 'HOST_WRITE_FAILED']]);
    expect(recorder.finished).toEqual([['prepare', 'failure', 'HOST_WRITE_FAILED']]);
    expect(recorder.steps).toEqual(['load-module:failed']);
    expect(kernel.writeLog.filter((w) => w.kind === 'write')).toEqual([]);
  });
});
