/**
 * Release of a group vfio-handoff did not prepare (bound to vfio-pci at boot or by another tool), on
 * workstation-efifb (GPU 0000:01:00.0, audio 0000:01:00.1, group 1): nothing of ours to give back, so nothing is
 * written, and the report still names the group and its GPU.
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

const GPU = '0000:01:00.0';
const sel = { all: false as const, selectors: parseSelectors([GPU]) };

describe('release of a group we did not prepare', () => {
  it('writes nothing and reports the group with its GPU as already released', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    const deps = { host: kernel, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 1_000 };
    // Someone else's run (its own state dir) put the group on vfio-pci.
    await new HandoffEngine({ ...deps, store: new MemoryStateStore() }).prepare(sel, { allowBootGpu: true });
    kernel.clearWriteLog();
    const report = await new HandoffEngine({ ...deps, store: new MemoryStateStore() }).release(sel);
    expect(report.plan.groups.map((g) => [g.group, g.gpus, g.steps])).toEqual([[1, [GPU], []]]);
    expect(report.outcomes.map((o) => [o.group, o.gpus, o.outcome, o.steps])).toEqual([[1, [GPU], 'already', []]]);
    expect(kernel.writeLog).toEqual([]);
  });
});
