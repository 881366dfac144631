import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

// server-aspeed-4xh100: the ASPEED BMC VGA at 02:00.0 is the boot GPU; four H100s on nvidia, each in its own group.
const BOOT = '0000:02:00.0' as PciAddress;
const H1 = '0000:18:00.0' as PciAddress;
const H2 = '0000:3b:00.0' as PciAddress;
const H3 = '0000:9b:00.0' as PciAddress;

async function setup() {
  const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
  const store = new MemoryStateStore();
  const engine = (afterStep?: (n: number) => void) =>
    new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 100, writeTimeoutMs: 300, afterStep });
  return { kernel, store, engine };
}

const driverOf = async (kernel: SimulatedKernel, a: string) => (await kernel.readLink(`sys/bus/pci/devices/${a}/driver`))?.split('/').pop();

describe('HandoffEngine.apply: one run for a set of intents', () => {
  it('prepares and releases in one run with per-GPU outcomes; a blocked GPU does not stop the others', async () => {
    const { kernel, engine } = await setup();
    await engine().prepare({ all: false, selectors: parseSelectors([H2]) }, { allowBootGpu: false });
    const report = await engine().apply([
      { address: BOOT, want: 'vfio', allowBootGpu: false }, // the boot GPU without permission
      { address: H1, want: 'vfio' },
      { address: H2, want: 'host' },
      { address: '0000:aa:00.0' as PciAddress, want: 'vfio' },
    ]);
    expect(report.gpus.map((g) => `${g.address} ${g.outcome} ${g.error?.code ?? ''}`.trim())).toEqual([
      `${BOOT} blocked BLOCKED`,
      `${H1} prepared`,
      `${H2} released`,
      '0000:aa:00.0 not_found NOT_FOUND',
    ]);
    expect(report.gpus[0]!.error!.message).toBe(`refusing to prepare: ${BOOT}: BOOT_GPU_NOT_PERMITTED`);
    expect(await driverOf(kernel, H1)).toBe('vfio-pci');
    expect(await driverOf(kernel, H2)).toBe('nvidia');
    expect(await driverOf(kernel, BOOT)).toBe('ast');
    // The host as it is after the run, and the records with it.
    expect(report.after.gpus.find((g) => g.fn.address === H1)?.fn.driver).toBe('vfio-pci');
    expect(report.snapshot.gpus.find((g) => g.fn.address === H1)?.fn.driver).toBe('nvidia');
    expect([...report.records.values()].map((r) => r.gpus)).toEqual([[H1]]);
  });

  it('reuses the caller\u2019s basis while it is current, and discovers again when another run changed the records since', async () => {
    const { kernel, engine } = await setup();
    const sut = engine();
    const basis = { snapshot: await sut.discover(), records: await sut.records() };
    const idle = await sut.apply([{ address: H1, want: 'host' }], { basis });
    expect(idle.discoveries).toBe(0);
    expect(idle.gpus.map((g) => g.outcome)).toEqual(['already']);

    // Another run (the CLI) prepares H3 after the basis was taken: the basis says H3 is on nvidia and not ours.
    await engine().prepare({ all: false, selectors: parseSelectors([H3]) }, { allowBootGpu: false });
    kernel.clearWriteLog();
    const report = await sut.apply([{ address: H3, want: 'host' }], { basis });
    expect(report.discoveries).toBe(2); // the stale basis dropped, then the look after the change
    expect(report.snapshot.gpus.find((g) => g.fn.address === H3)?.fn.driver).toBe('vfio-pci');
    expect(report.gpus.map((g) => g.outcome)).toEqual(['released']);
    expect(await driverOf(kernel, H3)).toBe('nvidia');
  });

  it('finishes an unfinished journal first and then plans from the host as recovery left it, not from the basis', async () => {
    const { kernel, store, engine } = await setup();
    class Crash extends Error {}
    const sut = engine();
    const basis = { snapshot: await sut.discover(), records: await sut.records() };
    await expect(
      engine((n) => {
        if (n === 4) throw new Crash('crash after step 4'); // the preamble's module loads done, H1's group half-way
      }).prepare({ all: false, selectors: parseSelectors([H1]) }, { allowBootGpu: false }),
    ).rejects.toBeInstanceOf(Crash);
    expect(store.journal).toBeDefined();
    const report = await sut.apply([{ address: H2, want: 'vfio' }], { basis });
    expect(report.recovered.map((o) => `${o.gpus.join()} ${o.outcome}`)).toEqual([`${H1} resumed`]);
    expect(store.journal).toBeUndefined();
    expect(report.discoveries).toBe(2);
    expect(report.gpus.map((g) => g.outcome)).toEqual(['prepared']);
    expect(await driverOf(kernel, H1)).toBe('vfio-pci'); // resumed
    expect(await driverOf(kernel, H2)).toBe('vfio-pci');
  });

  it('takes no lock and writes nothing on a dry run, and the refuse policy throws before any write', async () => {
    const { kernel, engine } = await setup();
    const dry = await engine().apply([{ address: H1, want: 'vfio' }], { dryRun: true });
    expect(dry.prepare.plan.groups.map((g) => g.gpus)).toEqual([[H1]]);
    expect(kernel.writeLog).toEqual([]);
    await expect(
      engine().apply(
        [
          { address: H1, want: 'vfio' },
          { address: BOOT, want: 'vfio' },
        ],
        { blocked: 'refuse' },
      ),
    ).rejects.toMatchObject({ code: 'BLOCKED' });
    expect(kernel.writeLog).toEqual([]);
  });
});
