import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { computeDeviceSets } from '../../../src/deviceplugin/devices.js';
import { revalidateDevices } from '../../../src/devices/revalidate.js';
import { planNode } from '../../../src/agent/node-plan.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { planSteps } from '../../../src/handoff/plan.js';
import { StepRunner } from '../../../src/handoff/step-runner.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { discoverHost } from '../../../src/host/discover.js';
import { notReady } from '../../../src/host/readiness.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import type { HostProfile } from '../../../src/profiles/profile.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

/**
 * Issue 9 kind 2: a boot framebuffer inside a BAR of a display GPU that is not VGA class (0x0380,
 * 0x0302). vfio-pci removes conflicting framebuffers only for class 0x0300 (kernel.md §3.3), so the
 * firmware framebuffer stays in the BAR and the VMM gets `BAR 0: can't reserve` (kernel-e2e.md,
 * "Non-VGA boot display"). Built on the Talos host of siderolabs/talos #14356.
 */
const GPU = '0000:c3:00.0' as PciAddress;
const sel = (...s: string[]) => ({ all: false as const, selectors: parseSelectors(s) });

async function setup(patch: Partial<HostProfile> = {}) {
  const profile = { ...(await loadBuiltinProfile('apu-0380-simpledrm-vfio')), ...patch };
  const kernel = new SimulatedKernel(profile);
  const store = new MemoryStateStore();
  const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 500 });
  return { kernel, store, sut };
}

describe('a class-0x0380 APU on vfio-pci with simpledrm inside BAR0 (Talos, kernel 6.18)', () => {
  it('is the boot GPU although it has no boot_vga, and is not ready while BOOTFB/simpledrm claims BAR0', async () => {
    const { kernel } = await setup();
    const snapshot = await discoverHost(kernel);
    const gpu = snapshot.gpus.find((g) => g.fn.address === GPU)!;
    expect(gpu.fn.bootVga).toBeUndefined();
    expect(gpu.isBootGpu).toBe(true);
    expect(gpu.framebuffers).toEqual(['simple-framebuffer.0']);
    expect(snapshot.barClaims?.map((c) => `${c.address} BAR${c.bar} ${c.name}`)).toEqual([`${GPU} BAR0 BOOTFB`]);
    expect(notReady(snapshot, GPU)).toMatchObject({ reason: 'BAR_CLAIMED' });
  });

  it('without --allow-boot-gpu: blocked BOOT_GPU_NOT_PERMITTED, nothing planned, and prepare --dry-run refuses', async () => {
    const { kernel, sut } = await setup();
    const report = await sut.inspect({ allowBootGpu: false });
    const a = report.assessments.find((x) => x.gpu.fn.address === GPU)!;
    expect(a.verdict).toBe('blocked');
    expect(a.reasons.map((r) => r.code)).toEqual(['BOOT_GPU_NOT_PERMITTED']);
    expect(report.plans.get(GPU)).toBeUndefined();
    await expect(sut.prepare(sel(GPU), { allowBootGpu: false, dryRun: true })).rejects.toMatchObject({ code: 'BLOCKED' });
    const all = await sut.prepare({ all: true }, { allowBootGpu: false, dryRun: true });
    expect(planSteps(all.plan)).toEqual([]);
    expect(all.skipped.map((s) => s.gpu.fn.address)).toEqual([GPU]);
    expect(kernel.writeLog).toEqual([]);
  });

  it('with --allow-boot-gpu: preparable with the console and framebuffer release, and ready afterwards', async () => {
    const { kernel, sut } = await setup();
    const report = await sut.inspect({ allowBootGpu: true });
    const a = report.assessments.find((x) => x.gpu.fn.address === GPU)!;
    expect(a.verdict).toBe('preparable');
    expect(planSteps(report.plans.get(GPU)!).map((s) => s.kind)).toEqual(['unbind-vtconsole', 'unbind-framebuffer', 'verify-group']);
    const done = await sut.prepare(sel(GPU), { allowBootGpu: true });
    expect(done.outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    const after = await discoverHost(kernel);
    expect(after.barClaims).toEqual([]);
    expect(notReady(after, GPU)).toBeUndefined();
    expect((await sut.inspect({ allowBootGpu: false })).assessments.find((x) => x.gpu.fn.address === GPU)!.verdict).toBe('ready');
  });

  it.each(['5.15.0-119-generic', '6.1.0-56-amd64', '6.4.16', '6.8.0-51-generic', '6.12.117+deb12-amd64', '6.18.48-talos'])(
    'plans the framebuffer release on kernel %s (vfio-pci removes nothing for class 0x0380 on any version)',
    async (release) => {
      const { kernel, sut } = await setup({ kernelRelease: release });
      // Bind-only (what vfio-pci alone does) leaves the framebuffer in place on every kernel.
      kernel.setDriverBinding(GPU, undefined);
      await kernel.writeText(`sys/bus/pci/devices/${GPU}/driver_override`, 'vfio-pci');
      await kernel.writeText('sys/bus/pci/drivers_probe', GPU);
      expect(kernel.state().framebuffers.map((f) => `${f.device}:${f.driver}`)).toEqual(['simple-framebuffer.0:simple-framebuffer']);
      expect(kernel.state().removedFramebuffers).toEqual([]);
      const report = await sut.inspect({ allowBootGpu: true });
      expect(report.assessments.find((x) => x.gpu.fn.address === GPU)!.verdict).toBe('preparable');
      expect(planSteps(report.plans.get(GPU)!).map((s) => s.kind)).toContain('unbind-framebuffer');
    },
  );

  it('the device plugin never advertises it Healthy, Allocate revalidation refuses it, and the agent does not call it Ready', async () => {
    const { kernel } = await setup();
    const snapshot = await discoverHost(kernel);
    const sets = computeDeviceSets(snapshot, () => 'amd.com/strix', new Map([['amd.com/strix', [{ id: GPU, resource: 'amd.com/strix', health: 'Healthy', group: 21, numaNode: undefined, reason: undefined }]]]));
    expect(sets.get('amd.com/strix')).toEqual([expect.objectContaining({ id: GPU, health: 'Unhealthy', reason: 'BAR_CLAIMED' })]);
    expect((await revalidateDevices(kernel, snapshot, [GPU])).get(GPU)).toBe('BAR_CLAIMED');
    const actions = planNode({
      snapshot,
      spec: { nodeName: 'n1', gpus: [{ address: GPU, resourceName: 'amd.com/strix', allowBootGpu: false }] } as never,
      inUse: new Set(),
      records: new Map(),
      previous: undefined,
      now: '2026-11-30T00:00:00Z',
    });
    expect(actions.statuses.find((s) => s.address === GPU)).toMatchObject({ phase: 'Failed', reason: 'BootGpuNotPermitted' });
  });

  it('post-prepare verification (verify-group) fails while the framebuffer claims a BAR, and passes once it is released', async () => {
    const { kernel } = await setup();
    const runner = new StepRunner({ host: kernel, clock: realClock, writeTimeoutMs: 500, verifyTimeoutMs: 100, pollIntervalMs: 10 });
    const verify = { kind: 'verify-group', group: 21, expect: 'vfio', members: [GPU] } as const;
    await expect(runner.run(verify)).rejects.toThrow(/BOOTFB in BAR 0 of 0000:c3:00.0/);
    await kernel.writeText('sys/bus/platform/drivers/simple-framebuffer/unbind', 'simple-framebuffer.0');
    await expect(runner.run(verify)).resolves.toEqual({ outcome: 'done' });
  });
});
