/**
 * A release whose group keeps /dev/vfio/<group> (a function vfio-pci had before vfio-handoff, so its check
 * at the end says `nodeGone: false`) journals that check to the state directory like any other step: after
 * a crash the next run reads the journal back, accepts it and finishes the release. Host:
 * t400-bound-by-other-tool (Quadro T400 0000:86:00.0 put on vfio-pci by another tool, its audio 0000:86:00.1
 * on snd_hda_intel, IOMMU group 6), with the journal and records as files (FileStateStore).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { FileStateStore } from '../../../src/state/file-state-store.js';

const GPU = '0000:86:00.0';
const AUDIO = '0000:86:00.1';
const sel = { all: false as const, selectors: parseSelectors([GPU]) };
class Crash extends Error {}

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('a crashed release of a group that keeps /dev/vfio/6, journaled on disk', () => {
  it('the next run reads the journal back and finishes the release: the audio on snd_hda_intel, the GPU left on vfio-pci', async () => {
    dir = await mkdtemp(join(tmpdir(), 'vfio-handoff-release-journal-'));
    const kernel = new SimulatedKernel(await loadBuiltinProfile('t400-bound-by-other-tool'));
    const store = new FileStateStore({ dir });
    const engine = (afterStep?: (n: number) => void) =>
      new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 150, writeTimeoutMs: 500, ...(afterStep ? { afterStep } : {}) });
    expect((await engine().prepare(sel, { allowBootGpu: false })).outcomes.map((o) => o.outcome)).toEqual(['prepared']);

    // Release: clear the audio's override, unbind it from vfio-pci, probe it; killed after the first step.
    const crashAfterFirst = (n: number) => {
      if (n === 1) throw new Crash('killed after release step 1');
    };
    await expect(engine(crashAfterFirst).release(sel)).rejects.toBeInstanceOf(Crash);
    const journal = await store.readJournal();
    expect(journal?.groups[0]?.steps.at(-1)).toEqual({ kind: 'verify-group', group: 6, expect: 'host', members: [AUDIO], nodeGone: false });

    const recovered = await engine().recover();
    expect(recovered.map((o) => [o.group, o.outcome])).toEqual([[6, 'resumed']]);
    const state = (a: string) => kernel.state().devices.find((d) => d.address === a)!;
    expect([state(GPU).driver, state(GPU).driverOverride]).toEqual(['vfio-pci', 'vfio-pci']);
    expect([state(AUDIO).driver, state(AUDIO).driverOverride]).toEqual(['snd_hda_intel', undefined]);
    expect(await store.readJournal()).toBeUndefined();
    expect([...(await store.readRecords()).keys()]).toEqual([]);
  });
});
