/**
 * The steps that undo a failed run, planned from each function's state before the run (`before` in the
 * journal): every function goes back to exactly that driver and driver_override, and the check at the end
 * verifies what must hold — on the host for the functions that were off vfio-pci (and /dev/vfio/<group>
 * gone unless a function stays on vfio-pci), on vfio-pci for those a failed release must leave there.
 * Hosts: workstation-efifb (boot GPU 0000:01:00.0 without a driver under efifb + fbcon, HDMI audio
 * 0000:01:00.1 on snd_hda_intel, IOMMU group 1) and t400-bound-by-other-tool (Quadro T400 0000:86:00.0 put
 * on vfio-pci by another tool, its audio 0000:86:00.1 on snd_hda_intel, group 6). Every expected step list is
 * written here from the driver-core order in src/handoff/plan.ts's contract, not read from the code.
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import type { StepEvent } from '../../../src/handoff/executor.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

const GPU = '0000:01:00.0' as PciAddress;
const AUDIO = '0000:01:00.1' as PciAddress;
const T400 = '0000:86:00.0' as PciAddress;
const T400_AUDIO = '0000:86:00.1' as PciAddress;
const sel = (a: string) => ({ all: false as const, selectors: parseSelectors([a]) });
const TIMEOUTS = { verifyTimeoutMs: 150, writeTimeoutMs: 500 };

async function setup(profile: 'workstation-efifb' | 't400-bound-by-other-tool', onStep?: (e: StepEvent) => void) {
  const kernel = new SimulatedKernel(await loadBuiltinProfile(profile));
  const store = new MemoryStateStore();
  const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, ...(onStep ? { onStep } : {}), ...TIMEOUTS });
  return { kernel, store, sut };
}
function stateOf(kernel: SimulatedKernel, a: string) {
  const d = kernel.state().devices.find((x) => x.address === a)!;
  return { driver: d.driver, override: d.driverOverride };
}

describe('rollback of a failed prepare (workstation-efifb, nothing on vfio-pci before)', () => {
  it('gives both functions back, verifies the group is on the host with /dev/vfio/1 gone, then rebinds the framebuffer and fbcon', async () => {
    const { kernel, sut } = await setup('workstation-efifb');
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY' });
    const [outcome] = (await sut.prepare(sel(GPU), { allowBootGpu: true })).outcomes;
    expect(outcome!.outcome).toBe('rolled_back');
    expect(outcome!.rollback!.map((s) => s.step)).toEqual([
      // The GPU had no driver and no override: unbound from vfio-pci, nothing probed.
      { kind: 'clear-override', address: GPU },
      { kind: 'unbind-driver', address: GPU, driver: 'vfio-pci' },
      // The audio never left snd_hda_intel: only its override goes.
      { kind: 'clear-override', address: AUDIO },
      { kind: 'verify-group', group: 1, expect: 'host', members: [GPU, AUDIO] },
      { kind: 'bind-framebuffer', device: 'efi-framebuffer.0', driver: 'efi-framebuffer' },
      { kind: 'bind-vtconsole', vtconsole: 'vtcon1' },
    ]);
    expect(outcome!.rollback!.filter((s) => s.outcome === 'failed')).toEqual([]);
    expect([stateOf(kernel, GPU), stateOf(kernel, AUDIO)]).toEqual([
      { driver: undefined, override: undefined },
      { driver: 'snd_hda_intel', override: undefined },
    ]);
    expect(kernel.state().vfioGroups).toEqual([]);
  });
});

describe('rollback of a failed prepare (t400-bound-by-other-tool: the GPU was on vfio-pci before)', () => {
  it('checks the audio it gave back really left vfio-pci: bound there again behind its back, the rollback fails and says so', async () => {
    const { kernel, sut } = await setup('t400-bound-by-other-tool', (e) => {
      // The other tool binds the audio to vfio-pci again right after the rollback probed it onto its host driver.
      if (e.phase === 'end' && e.rollback && e.step.kind === 'probe') kernel.setDriverBinding(T400_AUDIO, 'vfio-pci');
    });
    // vfio-pci's probe of the audio fails: the prepare fails with the audio unbound.
    kernel.injectFault({ path: 'sys/bus/pci/drivers_probe', errno: 'EIO', times: 1 });
    const [outcome] = (await sut.prepare(sel(T400), { allowBootGpu: false })).outcomes;
    expect(outcome!.rollback!.map((s) => [s.step, s.outcome])).toEqual([
      [{ kind: 'clear-override', address: T400_AUDIO }, 'done'],
      [{ kind: 'probe', address: T400_AUDIO, expect: 'snd_hda_intel' }, 'done'],
      // Only the audio must be off vfio-pci; the GPU stays there, and so does /dev/vfio/6.
      [{ kind: 'verify-group', group: 6, expect: 'host', members: [T400_AUDIO], nodeGone: false }, 'failed'],
    ]);
    expect(outcome!.outcome).toBe('rollback_failed');
    expect(outcome!.rollbackError!.message).toMatch(
      /^rollback of group 6 did not complete — verify group 6 is back on the host \(no vfio-pci, no \/dev\/vfio\/6\): .+\. The group is not as it was before \(it may be half-bound\): 0000:86:00\.0 on vfio-pci \(driver_override vfio-pci\), 0000:86:00\.1 on vfio-pci\. /,
    );
  });
});

describe('rollback of a failed release (workstation-efifb)', () => {
  it('puts back exactly what was there before the release: the GPU on vfio-pci with its override, the audio someone gave back by hand stays on snd_hda_intel', async () => {
    const { kernel, sut } = await setup('workstation-efifb');
    expect((await sut.prepare(sel(GPU), { allowBootGpu: true })).outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    // By hand: the audio back on snd_hda_intel (its driver_override still says vfio-pci).
    kernel.setDriverBinding(AUDIO, 'snd_hda_intel');
    // The release clears the GPU's override, then its unbind from vfio-pci fails.
    kernel.injectFault({ path: 'sys/bus/pci/drivers/vfio-pci/unbind', errno: 'EIO', times: 1 });
    const [outcome] = (await sut.release(sel(GPU))).outcomes;
    expect(outcome!.outcome).toBe('rolled_back');
    expect(outcome!.steps.map((s) => [s.step.kind, s.outcome])).toEqual([
      ['clear-override', 'done'],
      ['unbind-driver', 'failed'],
    ]);
    expect(outcome!.rollback!.map((s) => [s.step, s.outcome])).toEqual([
      [{ kind: 'set-override', address: GPU, driver: 'vfio-pci' }, 'done'],
      // Only the GPU was on vfio-pci before the release: it must be there again, with /dev/vfio/1.
      [{ kind: 'verify-group', group: 1, expect: 'vfio', members: [GPU] }, 'done'],
    ]);
    expect([stateOf(kernel, GPU), stateOf(kernel, AUDIO)]).toEqual([
      { driver: 'vfio-pci', override: 'vfio-pci' },
      { driver: 'snd_hda_intel', override: 'vfio-pci' },
    ]);
  });

  it('with nothing on vfio-pci before the release (both unbound by hand), verifies the group on the host, not on vfio-pci', async () => {
    const { kernel, sut } = await setup('workstation-efifb');
    await sut.prepare(sel(GPU), { allowBootGpu: true });
    // By hand: the GPU unbound, the audio back on snd_hda_intel; both overrides still say vfio-pci.
    kernel.setDriverBinding(GPU, undefined);
    kernel.setDriverBinding(AUDIO, 'snd_hda_intel');
    expect(kernel.state().vfioGroups).toEqual([]);
    // The release clears the GPU's override; clearing the audio's fails.
    kernel.injectFault({ path: `sys/bus/pci/devices/${AUDIO}/driver_override`, errno: 'EIO', times: 1 });
    const [outcome] = (await sut.release(sel(GPU))).outcomes;
    expect(outcome!.steps.map((s) => [s.step.kind, s.outcome])).toEqual([
      ['clear-override', 'done'],
      ['clear-override', 'failed'],
    ]);
    expect(outcome!.rollback!.map((s) => [s.step, s.outcome])).toEqual([
      [{ kind: 'set-override', address: GPU, driver: 'vfio-pci' }, 'done'],
      [{ kind: 'verify-group', group: 1, expect: 'host', members: [GPU, AUDIO] }, 'done'],
    ]);
    expect(outcome!.outcome).toBe('rolled_back');
    expect([stateOf(kernel, GPU), stateOf(kernel, AUDIO)]).toEqual([
      { driver: undefined, override: 'vfio-pci' },
      { driver: 'snd_hda_intel', override: 'vfio-pci' },
    ]);
  });
});
