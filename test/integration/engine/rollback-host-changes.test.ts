/**
 * The rollback of a failed prepare reads the host again; the host may have changed under the run. A group
 * hot-removed mid-prepare, or a member of it that can no longer be read, must not crash the rollback: the
 * run ends with an outcome for the group. Hosts: workstation-efifb (GPU + audio behind root port 00:01.0,
 * group 1) and foreign-usb-in-group (the Intel USB controller 0000:02:00.0 given to vfio-pci by its owner).
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

function engineOver(kernel: SimulatedKernel, onStep: (e: StepEvent) => void): HandoffEngine {
  return new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 100, writeTimeoutMs: 300, onStep });
}

describe('rollback after the host changed under a prepare', () => {
  it('the whole group hot-removed mid-prepare: the prepare fails and its rollback finds nothing to put back', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    let removed = false;
    const engine = engineOver(kernel, (e) => {
      if (!removed && e.phase === 'start' && e.step.kind === 'probe') {
        removed = true;
        kernel.removeDevice('0000:00:01.0'); // the root port, and with it the GPU and its audio
      }
    });
    const report = await engine.apply([{ address: GPU, want: 'vfio', allowBootGpu: true }]);
    expect(removed).toBe(true);
    expect(report.gpus.map((g) => g.outcome)).toEqual(['rolled_back']);
    expect(await kernel.exists('sys/bus/pci/devices/0000:01:00.0')).toBe(false);
  });

  it('a group member that cannot be read any more when the rollback looks again: the card functions still go back', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('foreign-usb-in-group'));
    await kernel.loadModule('vfio-pci');
    kernel.setDriverBinding('0000:02:00.0', 'vfio-pci');
    kernel.injectFault({ path: 'sys/bus/pci/drivers_probe', errno: 'EIO', times: 1 });
    let faulted = false;
    const engine = engineOver(kernel, (e) => {
      if (!faulted && e.phase === 'end' && e.outcome.outcome === 'failed') {
        faulted = true;
        kernel.injectReadFault({ path: /0000:02:00\.0\/(vendor|device|class)$/, errno: 'EIO' });
      }
    });
    const report = await engine.apply([{ address: GPU, want: 'vfio' }]);
    expect(faulted).toBe(true);
    expect(report.gpus.map((g) => g.outcome)).toEqual(['rolled_back']);
    const driverOf = async (a: string) => (await kernel.readLink(`sys/bus/pci/devices/${a}/driver`))?.split('/').pop();
    expect([await driverOf(GPU), await driverOf('0000:01:00.1')]).toEqual(['nvidia', 'snd_hda_intel']);
  });
});
