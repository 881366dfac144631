import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { BlockedError, InvalidArgumentError, NotAGpuError, NotFoundError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { discoverHost } from '../../../src/host/discover.js';
import type { HostProfile } from '../../../src/profiles/profile.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

async function setup(profile: string | HostProfile) {
  const p = typeof profile === 'string' ? await loadBuiltinProfile(profile) : profile;
  const kernel = new SimulatedKernel(p);
  const store = new MemoryStateStore();
  const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 500 });
  return { kernel, store, sut };
}

async function driverOf(kernel: SimulatedKernel, addr: string): Promise<string | undefined> {
  return (await kernel.readLink(`sys/bus/pci/devices/${addr}/driver`))?.split('/').pop();
}

const sel = (...s: string[]) => ({ all: false as const, selectors: parseSelectors(s) });

describe('server with an ASPEED boot VGA and four H100 PCIe', () => {
  it('judges the BMC VGA blocked as boot GPU and every H100 preparable', async () => {
    const { sut } = await setup('server-aspeed-4xh100');
    const report = await sut.inspect({ allowBootGpu: false });
    const byAddr = Object.fromEntries(report.assessments.map((a) => [a.gpu.fn.address, a]));
    expect(byAddr['0000:02:00.0']?.verdict).toBe('blocked');
    expect(byAddr['0000:02:00.0']?.reasons.map((r) => r.code)).toEqual(['BOOT_GPU_NOT_PERMITTED']);
    for (const a of ['0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0']) {
      expect(byAddr[a]?.verdict).toBe('preparable');
      expect(byAddr[a]?.gpu.fn.classCode).toBe(0x030200);
    }
  });

  it('prepare --all takes every H100, skips the BMC, and writes only to the H100 groups in order', async () => {
    const { kernel, sut } = await setup('server-aspeed-4xh100');
    const report = await sut.prepare({ all: true }, { allowBootGpu: false });
    expect(report.skipped.map((a) => a.gpu.fn.address)).toEqual(['0000:02:00.0']);
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['prepared', 'prepared', 'prepared', 'prepared']);
    const writes = kernel.writeLog.filter((w) => w.kind === 'write').map((w) => `${w.path} <- ${w.value.trim()}`);
    expect(writes.slice(0, 3)).toEqual([
      'sys/bus/pci/devices/0000:18:00.0/driver_override <- vfio-pci',
      'sys/bus/pci/drivers/nvidia/unbind <- 0000:18:00.0',
      'sys/bus/pci/drivers_probe <- 0000:18:00.0',
    ]);
    expect(writes).toHaveLength(12);
    expect(writes.join('\n')).not.toContain('0000:02:00.0');
    for (const a of ['0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0']) expect(await driverOf(kernel, a)).toBe('vfio-pci');
    expect(await driverOf(kernel, '0000:02:00.0')).toBe('ast');
    const after = await sut.inspect({ allowBootGpu: false });
    expect(after.assessments.filter((a) => a.verdict === 'ready')).toHaveLength(4);
  });

  it('a second prepare is a no-op that writes nothing', async () => {
    const { kernel, sut } = await setup('server-aspeed-4xh100');
    await sut.prepare(sel('10de:2331'), { allowBootGpu: false });
    kernel.clearWriteLog();
    const again = await sut.prepare(sel('10de:2331'), { allowBootGpu: false });
    expect(again.outcomes.every((o) => o.outcome === 'already')).toBe(true);
    expect(kernel.writeLog).toEqual([]);
  });

  it('release returns every H100 to nvidia and removes the group nodes', async () => {
    const { kernel, sut, store } = await setup('server-aspeed-4xh100');
    await sut.prepare(sel('0000:18:00.0', '0000:3b:00.0'), { allowBootGpu: false });
    expect(store.records.size).toBe(2);
    const rel = await sut.release({ all: true });
    expect(rel.outcomes.map((o) => o.outcome)).toEqual(['released', 'released']);
    expect(await driverOf(kernel, '0000:18:00.0')).toBe('nvidia');
    expect(await driverOf(kernel, '0000:3b:00.0')).toBe('nvidia');
    expect((await kernel.readText('sys/bus/pci/devices/0000:18:00.0/driver_override'))?.trim()).toBe('(null)');
    expect(await kernel.exists('dev/vfio/31')).toBe(false);
    expect(store.records.size).toBe(0);
  });
});

describe('workstation whose GPU is the boot VGA under efifb', () => {
  it('is blocked without --allow-boot-gpu and prepare writes nothing', async () => {
    const { kernel, sut } = await setup('workstation-efifb');
    const report = await sut.inspect({ allowBootGpu: false });
    expect(report.assessments[0]?.reasons.map((r) => r.code)).toContain('BOOT_GPU_NOT_PERMITTED');
    await expect(sut.prepare(sel('0000:01:00.0'), { allowBootGpu: false })).rejects.toBeInstanceOf(BlockedError);
    expect(kernel.writeLog).toEqual([]);
  });

  it('plans console, framebuffer, then both functions (not the root port)', async () => {
    const { sut } = await setup('workstation-efifb');
    const report = await sut.inspect({ allowBootGpu: true });
    const gpu = report.assessments.find((a) => a.gpu.fn.address === '0000:01:00.0')!;
    expect(gpu.verdict).toBe('preparable');
    expect(gpu.warnings.map((w) => w.code)).toEqual(expect.arrayContaining(['BOOT_GPU', 'CONSOLE_WILL_GO_DARK', 'FRAMEBUFFER_NOT_RESTORABLE']));
    const plan = report.plans.get(gpu.gpu.fn.address)!;
    const steps = [...plan.preamble, ...plan.groups.flatMap((g) => g.steps)].map((s) => s.kind);
    expect(steps).toEqual([
      'load-module', // vfio-pci
      'load-module', // vfio_iommu_type1: no IOMMU backend is loaded yet
      'unbind-vtconsole',
      'unbind-framebuffer',
      'set-override',
      'probe', // 01:00.0 has no driver bound (efifb holds it)
      'set-override',
      'unbind-driver',
      'probe',
      'verify-group',
    ]);
  });

  it('prepare --allow-boot-gpu moves GPU and audio to vfio-pci; release gives audio back; the framebuffer is gone for good', async () => {
    const { kernel, sut } = await setup('workstation-efifb');
    const rep = await sut.prepare(sel('10de:2684'), { allowBootGpu: true });
    expect(rep.outcomes[0]?.outcome).toBe('prepared');
    expect(await driverOf(kernel, '0000:01:00.0')).toBe('vfio-pci');
    expect(await driverOf(kernel, '0000:01:00.1')).toBe('vfio-pci');
    expect(await driverOf(kernel, '0000:00:01.0')).toBe('pcieport');
    expect(await kernel.exists('dev/vfio/1')).toBe(true);
    expect(await kernel.exists('sys/bus/platform/devices/efi-framebuffer.0')).toBe(false);
    const rel = await sut.release(sel('0000:01:00.0'));
    expect(rel.outcomes[0]?.outcome).toBe('released');
    expect(await driverOf(kernel, '0000:01:00.1')).toBe('snd_hda_intel');
    expect(await driverOf(kernel, '0000:01:00.0')).toBeUndefined();
    const fbStep = rel.outcomes[0]!.steps.find((s) => s.step.kind === 'bind-framebuffer');
    expect(fbStep?.outcome).toBe('skipped');
    expect(fbStep?.note).toMatch(/removed by the kernel/);
  });

  it('rolls the group back when unbinding the audio function fails with EBUSY', async () => {
    const { kernel, sut, store } = await setup('workstation-efifb');
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY', times: 1 });
    const rep = await sut.prepare(sel('0000:01:00.0'), { allowBootGpu: true });
    const o = rep.outcomes[0]!;
    expect(o.outcome).toBe('rolled_back');
    expect(o.error?.code).toBe('HOST_WRITE_FAILED');
    expect(await driverOf(kernel, '0000:01:00.1')).toBe('snd_hda_intel');
    expect(await driverOf(kernel, '0000:01:00.0')).not.toBe('vfio-pci');
    expect((await kernel.readText('sys/bus/pci/devices/0000:01:00.0/driver_override'))?.trim()).toBe('(null)');
    expect(await kernel.exists('dev/vfio/1')).toBe(false);
    expect(store.journal).toBeUndefined();
  });
});

describe('bad input changes nothing', () => {
  it.each(['../../etc/passwd', '0000:01:00.0/../../x', '0000:01:00.0\u0000', '/sys/bus/pci/devices/0000:01:00.0', 'gpu0', '10de:23', '0000:1:00.0', ''])(
    'rejects %j as a selector',
    (raw) => {
      expect(() => parseSelectors([raw])).toThrow(InvalidArgumentError);
    },
  );

  it('unknown addresses, unknown ids and non-GPU functions are refused with nothing written', async () => {
    const { kernel, sut } = await setup('workstation-efifb');
    await expect(sut.prepare(sel('0000:7f:00.0'), { allowBootGpu: true })).rejects.toBeInstanceOf(NotFoundError);
    await expect(sut.prepare(sel('1002:74a1'), { allowBootGpu: true })).rejects.toBeInstanceOf(NotFoundError);
    await expect(sut.prepare(sel('0000:01:00.1'), { allowBootGpu: true })).rejects.toBeInstanceOf(NotAGpuError);
    await expect(sut.prepare(sel('0000:02:00.0'), { allowBootGpu: true })).rejects.toBeInstanceOf(NotAGpuError);
    expect(kernel.writeLog).toEqual([]);
  });
});

describe('discovery agrees with the engine on the simulated host', () => {
  it('sees the efifb framebuffer in BAR1 of the boot GPU', async () => {
    const { kernel } = await setup('workstation-efifb');
    const snap = await discoverHost(kernel);
    expect(snap.framebuffers[0]?.owner).toEqual({ address: '0000:01:00.0', bar: 1 });
    expect(snap.gpus[0]?.isBootGpu).toBe(true);
  });
});
