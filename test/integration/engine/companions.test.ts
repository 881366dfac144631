import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { discoverHost } from '../../../src/host/discover.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

/** Issue 9 kind 1: only the GPU's card functions are companions; an APU slot's host functions are foreign. */
const GPU = '0000:04:00.0';
const HOST_FUNCTIONS = ['0000:04:00.2', '0000:04:00.3', '0000:04:00.4', '0000:04:00.5', '0000:04:00.6'];

async function setup() {
  const kernel = new SimulatedKernel(await loadBuiltinProfile('apu-laptop-shared-group'));
  const sut = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 200 });
  return { kernel, sut };
}

describe('AMD APU laptop: iGPU sharing its group with the security processor, USB and speakers', () => {
  it('finds only the HDMI audio as companion', async () => {
    const { kernel } = await setup();
    const gpu = (await discoverHost(kernel)).gpus.find((g) => g.fn.address === GPU)!;
    expect(gpu.companions).toEqual(['0000:04:00.1']);
  });

  it.each([false, true])('is blocked with FOREIGN_DEVICE naming 04:00.2-04:00.6 (allowBootGpu %s); bridges are tolerated', async (allowBootGpu) => {
    const { kernel, sut } = await setup();
    const a = (await sut.inspect({ allowBootGpu })).assessments.find((x) => x.gpu.fn.address === GPU)!;
    expect(a.verdict).toBe('blocked');
    expect(a.reasons.map((r) => r.code)).toEqual([...HOST_FUNCTIONS.map(() => 'FOREIGN_DEVICE'), ...(allowBootGpu ? [] : ['BOOT_GPU_NOT_PERMITTED'])]);
    HOST_FUNCTIONS.forEach((addr, i) => expect(a.reasons[i]!.message).toContain(addr));
    expect(Object.fromEntries(a.members.map((m) => [m.fn.address, m.role]))).toEqual({
      '0000:00:08.0': 'bridge',
      '0000:00:08.1': 'bridge',
      [GPU]: 'gpu',
      '0000:04:00.1': 'companion',
      ...Object.fromEntries(HOST_FUNCTIONS.map((h) => [h, 'foreign'])),
    });
    await expect(sut.prepare({ all: false, selectors: parseSelectors([GPU]) }, { allowBootGpu })).rejects.toMatchObject({ code: 'BLOCKED' });
    expect(kernel.writeLog).toEqual([]);
  });

  it('selecting a host function says it is not a GPU, without calling it a companion', async () => {
    const { sut } = await setup();
    await expect(sut.prepare({ all: false, selectors: parseSelectors(['0000:04:00.6']) }, { allowBootGpu: true })).rejects.toThrow(/0000:04:00\.6 is not a GPU \(class 0x040300\)$/);
    await expect(sut.prepare({ all: false, selectors: parseSelectors(['0000:04:00.1']) }, { allowBootGpu: true })).rejects.toThrow(/companion function of 0000:04:00\.0/);
  });
});
