/**
 * A release whose recorded function cannot be read when the release looks at the host (workstation-efifb:
 * GPU 0000:01:00.0 and its HDMI audio 0000:01:00.1 prepared, then the audio's ids unreadable). The release
 * cannot plan for that function, so it must not report the group released with the audio left on
 * vfio-pci and the record gone: its final check sees the audio still there, the release fails and is
 * rolled back, and the record stays for the next run.
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

const GPU = '0000:01:00.0' as PciAddress;
const AUDIO = '0000:01:00.1';

describe('release with a recorded function that cannot be read', () => {
  it('fails and is rolled back instead of leaving a half-bound group without a record', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 300 });
    const driverOf = async (a: string) => (await kernel.readLink(`sys/bus/pci/devices/${a}/driver`))?.split('/').pop();
    expect((await engine.apply([{ address: GPU, want: 'vfio', allowBootGpu: true }])).gpus.map((g) => g.outcome)).toEqual(['prepared']);

    kernel.injectReadFault({ path: /0000:01:00\.1\/(vendor|device|class)$/, errno: 'EIO' });
    const report = await engine.apply([{ address: GPU, want: 'host' }]);
    expect(report.gpus.map((g) => [g.outcome, g.error?.code])).toEqual([['rolled_back', 'VERIFY_FAILED']]);
    expect([await driverOf(GPU), await driverOf(AUDIO)]).toEqual(['vfio-pci', 'vfio-pci']);
    expect([...(await engine.records()).keys()]).toEqual([1]);
  });

  it('also when a foreign function on vfio-pci keeps /dev/vfio/N, so the node check cannot tell (foreign-usb-in-group)', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('foreign-usb-in-group'));
    await kernel.loadModule('vfio-pci');
    kernel.setDriverBinding('0000:02:00.0', 'vfio-pci'); // the USB controller's owner gave it to vfio-pci
    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 300 });
    const driverOf = async (a: string) => (await kernel.readLink(`sys/bus/pci/devices/${a}/driver`))?.split('/').pop();
    expect((await engine.apply([{ address: GPU, want: 'vfio' }])).gpus.map((g) => g.outcome)).toEqual(['prepared']);

    kernel.injectReadFault({ path: /0000:01:00\.1\/(vendor|device|class)$/, errno: 'EIO' });
    const report = await engine.apply([{ address: GPU, want: 'host' }]);
    expect(report.gpus.map((g) => [g.outcome, g.error?.code])).toEqual([['rolled_back', 'VERIFY_FAILED']]);
    expect([await driverOf(GPU), await driverOf(AUDIO), await driverOf('0000:02:00.0')]).toEqual(['vfio-pci', 'vfio-pci', 'vfio-pci']);
    expect([...(await engine.records()).keys()]).toEqual([1]);
  });
});
