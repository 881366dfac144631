/**
 * HandoffEngine.apply on a host whose two GPUs share IOMMU group 1 (src/testing/host-fixtures.ts): vfio
 * hands out a group whole, so one call that wants one GPU on VFIO and the other back on the host must not
 * prepare the group and then release it again.
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';
import { twoGpusOneGroup } from '../../../src/testing/host-fixtures.js';

const A = '0000:01:00.0' as PciAddress;
const B = '0000:02:00.0' as PciAddress;
const GROUP_1 = ['0000:01:00.0', '0000:01:00.1', '0000:02:00.0', '0000:02:00.1'];

const driverOf = async (kernel: SimulatedKernel, a: string) => (await kernel.readLink(`sys/bus/pci/devices/${a}/driver`))?.split('/').pop();

describe('HandoffEngine.apply: two GPUs in one IOMMU group', () => {
  it('wanting A on VFIO and B on the host in one call prepares the group and refuses the release of B', async () => {
    const kernel = new SimulatedKernel(twoGpusOneGroup());
    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 100, writeTimeoutMs: 300 });
    const report = await engine.apply([
      { address: A, want: 'vfio' },
      { address: B, want: 'host' },
    ]);
    expect(report.gpus).toEqual([
      { address: A, want: 'vfio', outcome: 'prepared' },
      {
        address: B,
        want: 'host',
        outcome: 'blocked',
        error: { code: 'GROUP_WANTED_ON_VFIO', message: `refusing to release ${B}: IOMMU group 1 also holds ${A}, wanted on vfio-pci in the same run (vfio hands out a group whole)` },
      },
    ]);
    expect(report.release.plan.groups).toEqual([]);
    for (const a of GROUP_1) expect(await driverOf(kernel, a)).toBe('vfio-pci');
  });

  it('wanting both back releases the group to its own drivers once', async () => {
    const kernel = new SimulatedKernel(twoGpusOneGroup());
    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 100, writeTimeoutMs: 300 });
    await engine.apply([{ address: A, want: 'vfio' }]);
    const report = await engine.apply([
      { address: A, want: 'host' },
      { address: B, want: 'host' },
    ]);
    expect(report.gpus.map((g) => g.outcome)).toEqual(['released', 'released']);
    expect(report.release.outcomes.map((o) => o.group)).toEqual([1]);
    expect(await Promise.all(GROUP_1.map((a) => driverOf(kernel, a)))).toEqual(['nvidia', 'snd_hda_intel', 'nvidia', 'snd_hda_intel']);
  });
});
