/**
 * A boot GPU that shares its IOMMU group with another GPU: preparing the other one takes the boot GPU to
 * vfio-pci too (vfio hands out a group whole), so it needs --allow-boot-gpu like the boot GPU itself, and
 * the boot GPU's firmware framebuffer is released first. Host: src/testing/host-fixtures.ts (two RTX 3090s
 * behind root ports without ACS, group 1) with the first card as the boot VGA under efifb and the iGPU not
 * the boot display (a desktop whose firmware starts on the discrete card).
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { assessGpu } from '../../../src/handoff/verdict.js';
import { discoverHost } from '../../../src/host/discover.js';
import { parseProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';
import { TWO_GPUS_ONE_GROUP_YAML } from '../../../src/testing/host-fixtures.js';

const BOOT = '0000:01:00.0' as PciAddress;
const OTHER = '0000:02:00.0' as PciAddress;

const yaml =
  TWO_GPUS_ONE_GROUP_YAML.replace('driver: i915, iommuGroup: 2, bootVga: true', 'driver: i915, iommuGroup: 2, bootVga: false').replace(
    /(address: "0000:01:00\.0".*?)bootVga: false/s,
    '$1bootVga: true',
  ) + 'framebuffers:\n  - { device: efi-framebuffer.0, driver: efi-framebuffer, claim: efifb, start: "0x4000000000", size: "0x7e9000", parent: "0000:01:00.0" }\n';

async function setup() {
  const kernel = new SimulatedKernel(parseProfile(yaml, 'boot-in-shared-group'));
  const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 300 });
  const driverOf = async (a: string) => (await kernel.readLink(`sys/bus/pci/devices/${a}/driver`))?.split('/').pop();
  return { kernel, engine, driverOf };
}

describe('the other GPU of a boot GPU\u2019s IOMMU group', () => {
  it('the fixture: the first card is the boot GPU, with efifb bound in its BAR', async () => {
    const { kernel, driverOf } = await setup();
    const s = await discoverHost(kernel);
    expect(s.gpus.filter((g) => g.isBootGpu).map((g) => g.fn.address)).toEqual([BOOT]);
    expect(await driverOf(OTHER)).toBe('nvidia');
    expect(s.framebuffers.map((f) => [f.device, f.driver])).toEqual([['efi-framebuffer.0', 'efi-framebuffer']]);
  });

  it('is blocked without --allow-boot-gpu, naming the boot GPU; nothing is written', async () => {
    const { kernel, engine } = await setup();
    const s = await discoverHost(kernel);
    const a = assessGpu(s, s.gpus.find((g) => g.fn.address === OTHER)!, { allowBootGpu: false });
    expect(a.verdict).toBe('blocked');
    expect(a.reasons).toEqual([
      {
        code: 'BOOT_GPU_NOT_PERMITTED',
        message: `${OTHER} shares IOMMU group 1 with the boot GPU ${BOOT}, which goes to vfio-pci with it (its firmware console goes dark); pass --allow-boot-gpu to take both`,
      },
    ]);
    const report = await engine.apply([{ address: OTHER, want: 'vfio' }]);
    expect(report.gpus.map((g) => [g.outcome, g.error?.code])).toEqual([['blocked', 'BLOCKED']]);
    expect(kernel.writeLog.filter((w) => w.kind === 'write')).toEqual([]);
  });

  it('with --allow-boot-gpu: warned about the console, efifb is released first, and the whole group ends on vfio-pci', async () => {
    const { kernel, engine, driverOf } = await setup();
    const s = await discoverHost(kernel);
    const a = assessGpu(s, s.gpus.find((g) => g.fn.address === OTHER)!, { allowBootGpu: true });
    expect(a.verdict).toBe('preparable');
    expect(a.warnings.map((w) => w.code)).toEqual(expect.arrayContaining(['BOOT_GPU', 'CONSOLE_WILL_GO_DARK']));
    const report = await engine.apply([{ address: OTHER, want: 'vfio', allowBootGpu: true }]);
    expect(report.gpus.map((g) => g.outcome)).toEqual(['prepared']);
    const steps = report.prepare.plan.groups[0]!.steps;
    const fbStep = steps.findIndex((st) => st.kind === 'unbind-framebuffer');
    expect(steps[fbStep]).toEqual({ kind: 'unbind-framebuffer', device: 'efi-framebuffer.0', driver: 'efi-framebuffer' });
    expect(fbStep).toBeLessThan(steps.findIndex((st) => st.kind === 'probe'));
    expect(report.prepare.plan.groups[0]!.record.framebuffers).toEqual([{ device: 'efi-framebuffer.0', driver: 'efi-framebuffer' }]);
    expect(await Promise.all(['0000:01:00.0', '0000:01:00.1', '0000:02:00.0', '0000:02:00.1'].map(driverOf))).toEqual(['vfio-pci', 'vfio-pci', 'vfio-pci', 'vfio-pci']);
  });
});
