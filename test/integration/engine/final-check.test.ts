/**
 * Prepare's final check (verify-group) catches a group that changed under it after its own steps: another
 * tool rebinding a card function to its host driver between its probe and the check, or taking back a
 * foreign function it had given to vfio-pci. Either leaves the group unusable for a VMM, so the prepare
 * fails (VERIFY_FAILED) and rolls back. Hosts: workstation-efifb (RTX 4090-like GPU + HDMI audio, group 1)
 * and foreign-usb-in-group (RTX 3090 + audio + an Intel USB controller in group 1).
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import type { StepEvent } from '../../../src/handoff/executor.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

const GPU = '0000:01:00.0' as PciAddress;
const AUDIO = '0000:01:00.1';
const USB = '0000:02:00.0';

function engineOver(kernel: SimulatedKernel, onStep: (e: StepEvent) => void): HandoffEngine {
  return new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 300, onStep });
}

describe('prepare\u2019s final check', () => {
  it('a card function rebound to its host driver after its probe fails the prepare, which rolls back', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    let raced = false;
    const engine = engineOver(kernel, (e) => {
      if (!raced && e.phase === 'end' && !e.rollback && e.step.kind === 'probe' && e.step.address === AUDIO) {
        raced = true;
        kernel.setDriverBinding(AUDIO, 'snd_hda_intel');
      }
    });
    const report = await engine.apply([{ address: GPU, want: 'vfio', allowBootGpu: true }]);
    expect(raced).toBe(true);
    expect(report.gpus.map((g) => [g.outcome, g.error?.code])).toEqual([['rolled_back', 'VERIFY_FAILED']]);
  });

  it('a foreign function its owner takes back from vfio-pci during the prepare fails it: the group is no longer viable', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('foreign-usb-in-group'));
    await kernel.loadModule('vfio-pci');
    kernel.setDriverBinding(USB, 'vfio-pci');
    let raced = false;
    const engine = engineOver(kernel, (e) => {
      if (!raced && e.phase === 'end' && !e.rollback && e.step.kind === 'probe' && e.step.address === GPU) {
        raced = true;
        kernel.setDriverBinding(USB, 'xhci_hcd');
      }
    });
    const report = await engine.apply([{ address: GPU, want: 'vfio' }]);
    expect(raced).toBe(true);
    expect(report.gpus.map((g) => [g.outcome, g.error?.code])).toEqual([['rolled_back', 'VERIFY_FAILED']]);
  });
});
