/**
 * A group whose foreign function someone else already gave to vfio-pci (foreign-usb-in-group: the Intel
 * USB controller 0000:02:00.0 shares IOMMU group 1 with the RTX 3090 and its audio). prepare accepts the
 * group (a foreign function already on vfio-pci does not block); release gives back
 * the GPU and its audio and leaves the USB controller where its owner put it — and /dev/vfio/1 with it, so
 * the release must not wait for that node to vanish.
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
const USB = '0000:02:00.0';

/** foreign-usb-in-group with the USB controller given to vfio-pci by another tool (override and probe). */
async function hostWithUsbOnVfio() {
  const kernel = new SimulatedKernel(await loadBuiltinProfile('foreign-usb-in-group'));
  await kernel.loadModule('vfio-pci');
  await kernel.writeText(`sys/bus/pci/devices/${USB}/driver_override`, 'vfio-pci');
  await kernel.writeText(`sys/bus/pci/devices/${USB}/driver/unbind`, USB);
  await kernel.writeText('sys/bus/pci/drivers_probe', USB);
  const driverOf = async (a: string) => (await kernel.readLink(`sys/bus/pci/devices/${a}/driver`))?.split('/').pop();
  expect(await driverOf(USB)).toBe('vfio-pci');
  return { kernel, driverOf };
}

describe('a foreign function of the group left on vfio-pci by its owner', () => {
  it('a prepare that fails is rolled back to exactly the drivers before, without waiting for /dev/vfio/1 to go', async () => {
    const { kernel, driverOf } = await hostWithUsbOnVfio();
    kernel.injectFault({ path: 'sys/bus/pci/drivers_probe', errno: 'EIO', times: 1 });
    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 300, writeTimeoutMs: 300 });
    const report = await engine.apply([{ address: GPU as never, want: 'vfio' }]);
    expect(report.gpus.map((g) => [g.outcome, g.rollbackError])).toEqual([['rolled_back', undefined]]);
    expect([await driverOf(GPU), await driverOf('0000:01:00.1'), await driverOf(USB)]).toEqual(['nvidia', 'snd_hda_intel', 'vfio-pci']);
  });

  it('release gives back the GPU and its audio, leaves the USB controller and /dev/vfio/1 as they were', async () => {
    const { kernel, driverOf } = await hostWithUsbOnVfio();

    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 300, writeTimeoutMs: 300 });
    const prepared = await engine.prepare({ all: false, selectors: parseSelectors([GPU]) }, { allowBootGpu: false });
    expect(prepared.outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    expect(prepared.assessments.map((a) => a.verdict)).toEqual(['preparable']);

    const released = await engine.release({ all: false, selectors: parseSelectors([GPU]) });
    expect(released.outcomes.map((o) => [o.outcome, o.error?.message])).toEqual([['released', undefined]]);
    expect([await driverOf(GPU), await driverOf('0000:01:00.1'), await driverOf(USB)]).toEqual(['nvidia', 'snd_hda_intel', 'vfio-pci']);
    expect(await kernel.exists('dev/vfio/1')).toBe(true);
  });

  it('a driverless foreign function does not fail the final check of a prepare: only the card functions must end on vfio-pci', async () => {
    // Found by the random-host property: the GPU already on vfio-pci, its audio function and the USB controller unbound.
    const kernel = new SimulatedKernel(await loadBuiltinProfile('foreign-usb-in-group'));
    await kernel.loadModule('vfio-pci');
    kernel.setDriverBinding(GPU, 'vfio-pci');
    kernel.setDriverBinding('0000:01:00.1', undefined);
    kernel.setDriverBinding(USB, undefined);
    const driverOf = async (a: string) => (await kernel.readLink(`sys/bus/pci/devices/${a}/driver`))?.split('/').pop();
    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 300, writeTimeoutMs: 300 });
    const report = await engine.apply([{ address: GPU as never, want: 'vfio' }]);
    expect(report.gpus.map((g) => g.outcome)).toEqual(['prepared']);
    expect([await driverOf(GPU), await driverOf('0000:01:00.1'), await driverOf(USB)]).toEqual(['vfio-pci', 'vfio-pci', undefined]);
  });
});
