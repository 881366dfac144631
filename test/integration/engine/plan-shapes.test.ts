/**
 * The shape of plans on hosts whose facts decide it (written from the profiles, not from the planner):
 * what is loaded, who holds the console, which functions already have an override or no driver, and
 * what a release does for a group vfio-handoff did not prepare.
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { planSteps } from '../../../src/handoff/plan.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { describeStep } from '../../../src/handoff/steps.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import type { HostProfile } from '../../../src/profiles/profile.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

function setup(profile: HostProfile) {
  const kernel = new SimulatedKernel(profile);
  const store = new MemoryStateStore();
  return { kernel, store, sut: new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 1_000 }) };
}
const sel = (...s: string[]) => ({ all: false as const, selectors: parseSelectors(s) });

describe('plan shapes', () => {
  it('a second GPU beside the boot GPU: no console or framebuffer step, only its own group', async () => {
    const { sut } = setup(await loadBuiltinProfile('workstation-efifb-6.1'));
    const report = await sut.prepare(sel('0000:03:00.0'), { allowBootGpu: false, dryRun: true });
    expect(planSteps(report.plan).map(describeStep)).toEqual([
      'load kernel module vfio-pci',
      // No VFIO IOMMU backend is loaded on this host: a VMM's VFIO_SET_IOMMU would fail without it.
      'load kernel module vfio_iommu_type1',
      'set driver_override of 0000:03:00.0 to vfio-pci',
      'probe 0000:03:00.0 (expect vfio-pci)',
      'set driver_override of 0000:03:00.1 to vfio-pci',
      'unbind 0000:03:00.1 from snd_hda_intel',
      'probe 0000:03:00.1 (expect vfio-pci)',
      'verify group 14 is viable on vfio-pci and /dev/vfio/14 exists',
    ]);
  });

  it('prepare --all with nothing preparable loads no module and writes nothing', async () => {
    const { kernel, sut } = setup(await loadBuiltinProfile('foreign-usb-in-group'));
    const report = await sut.prepare({ all: true }, { allowBootGpu: false });
    expect(planSteps(report.plan)).toEqual([]);
    expect(report.skipped.map((a) => a.gpu.fn.address)).toEqual(['0000:00:02.0', '0000:01:00.0']);
    expect(kernel.writeLog).toEqual([]);
  });

  it('vfio-pci already loaded: no preamble; an override already set is not written again', async () => {
    const base = await loadBuiltinProfile('server-aspeed-4xh100');
    const profile: HostProfile = {
      ...base,
      loadedDrivers: [...base.loadedDrivers, 'vfio-pci'],
      devices: base.devices.map((d) => (d.address === '0000:18:00.0' ? { ...d, driverOverride: 'vfio-pci' } : d)),
    };
    const { kernel, sut } = setup(profile);
    const report = await sut.prepare(sel('0000:18:00.0'), { allowBootGpu: false });
    expect(report.plan.preamble).toEqual([]);
    expect(planSteps(report.plan).map((s) => s.kind)).toEqual(['unbind-driver', 'probe', 'verify-group']);
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    expect(kernel.state().devices.find((d) => d.address === '0000:18:00.0')!.driver).toBe('vfio-pci');
  });

  it('several GPUs: one plan per group, groups in numeric order, each verified', async () => {
    const { sut } = setup(await loadBuiltinProfile('server-aspeed-4xh100'));
    const report = await sut.prepare(sel('0000:bb:00.0', '0000:18:00.0'), { allowBootGpu: false, dryRun: true });
    expect(report.plan.groups.map((g) => [g.group, g.gpus, g.steps.at(-1)?.kind])).toEqual([
      [31, ['0000:18:00.0'], 'verify-group'],
      [135, ['0000:bb:00.0'], 'verify-group'],
    ]);
    expect(report.plan.preamble.map((s) => s.kind === 'load-module' && s.module)).toEqual(['vfio-pci', 'vfio_iommu_type1']);
  });

  it('release of a group vfio-handoff did not prepare: gives back only what it took, so nothing is written', async () => {
    // Another tool (or vfio-pci.ids= at boot) put this GPU on vfio-pci; taking it away would undo their work.
    const { kernel, sut } = setup(await loadBuiltinProfile('server-aspeed-l40s-vfio'));
    const report = await sut.release(sel('0000:18:00.0'));
    expect(planSteps(report.plan)).toEqual([]);
    expect(kernel.writeLog).toEqual([]);
    const s = kernel.state();
    expect(s.devices.find((d) => d.address === '0000:18:00.0')!.driver).toBe('vfio-pci');
    expect(s.vfioGroups).toContain(31);
  });

  it('release --all takes only the groups on vfio-pci (or recorded), never the others', async () => {
    const { kernel, sut } = setup(await loadBuiltinProfile('server-aspeed-4xh100'));
    await sut.prepare(sel('0000:3b:00.0'), { allowBootGpu: false });
    const report = await sut.release({ all: true });
    expect(report.plan.groups.map((g) => g.group)).toEqual([45]);
    expect(kernel.state().devices.find((d) => d.address === '0000:3b:00.0')!.driver).toBe('nvidia');
    expect(kernel.state().vfioGroups).toEqual([]);
  });
});
