/**
 * Which GPUs a `prepare`/`release` selector names (README: a PCI address, lspci's short form, or
 * vendor:device), through the engine's dry run on built-in hosts: server-aspeed-4xh100 has four H100s
 * 10de:2331 behind root ports and an ASPEED BMC; workstation-efifb a GPU with its audio function.
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { InvalidArgumentError, NotAGpuError, NotFoundError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

async function chosen(profile: string, selectors: string[]): Promise<string[]> {
  const kernel = new SimulatedKernel(await loadBuiltinProfile(profile));
  const sut = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger });
  const report = await sut.prepare({ all: false, selectors: parseSelectors(selectors) }, { allowBootGpu: true, dryRun: true });
  expect(kernel.writeLog).toEqual([]);
  return report.assessments.map((a) => a.gpu.fn.address);
}

const H100S = ['0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0'];

describe('GPU selectors', () => {
  it('vendor:device names every GPU with that id, in address order; other ids none', async () => {
    expect(await chosen('server-aspeed-4xh100', ['10de:2331'])).toEqual(H100S);
    expect(await chosen('server-aspeed-4xh100', ['0x10DE:0x2331'])).toEqual(H100S);
    await expect(chosen('server-aspeed-4xh100', ['10de:2330'])).rejects.toThrow(new NotFoundError('no GPU with id 10de:2330 on this host'));
    // Same vendor, other device; same device, other vendor.
    await expect(chosen('server-aspeed-4xh100', ['1a03:2331'])).rejects.toBeInstanceOf(NotFoundError);
  });

  it('addresses, long or short, in any order and repeated, name each GPU once in address order', async () => {
    expect(await chosen('server-aspeed-4xh100', ['0000:bb:00.0', '18:00.0', '0000:18:00.0'])).toEqual(['0000:18:00.0', '0000:bb:00.0']);
    expect(await chosen('server-aspeed-4xh100', ['0000:9b:00.0', '10de:2331'])).toEqual(H100S);
    expect(await chosen('server-aspeed-4xh100', ['0000:02:00.0'])).toEqual(['0000:02:00.0']);
  });

  it('an address that is no device, or a device that is no GPU, is refused with what it is', async () => {
    await expect(chosen('server-aspeed-4xh100', ['0000:7f:00.0'])).rejects.toThrow(new NotFoundError('no PCI device 0000:7f:00.0 on this host'));
    await expect(chosen('server-aspeed-4xh100', ['0000:17:01.0'])).rejects.toThrow(new NotAGpuError('0000:17:01.0 is not a GPU (class 0x060400)'));
    await expect(chosen('workstation-efifb', ['0000:01:00.1'])).rejects.toThrow(
      new NotAGpuError('0000:01:00.1 is not a GPU: it is a companion function of 0000:01:00.0; select the GPU and its whole IOMMU group moves with it'),
    );
  });

  it.each(['10de:233', '10de:23311', '10de-2331', 'g0de:2331', '10de:2331 ', '0000:18:00.0/..', '/sys/bus/pci', ''])('refuses %j before reading the host', (raw) => {
    expect(() => parseSelectors([raw])).toThrow(
      new InvalidArgumentError(`not a GPU selector: ${JSON.stringify(raw)} (use a PCI address like 0000:65:00.0 or vendor:device like 10de:2331)`),
    );
  });

  it('parses each form to what it names', () => {
    expect(parseSelectors(['10DE:2331', '65:00.0', '0004:01:00.0'])).toEqual([
      { kind: 'id', vendorId: '10de', deviceId: '2331' },
      { kind: 'address', address: '0000:65:00.0' },
      { kind: 'address', address: '0004:01:00.0' },
    ]);
  });
});
