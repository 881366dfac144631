import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { planSteps } from '../../../src/handoff/plan.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { discoverHost } from '../../../src/host/discover.js';
import { vfioIommuBackendAvailable } from '../../../src/host/model.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import type { HostProfile } from '../../../src/profiles/profile.js';
import { NodeHost } from '../../../src/sysfs/node-host.js';
import * as P from '../../../src/sysfs/paths.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

/**
 * The kernel e2e suite's non-VGA boot display (scenario f) as a host profile: bochs-display (class 0x038000,
 * no boot_vga) with efifb inside BAR0. Debian 6.1 keeps `efi-framebuffer.0` under `/sys/devices/platform`;
 * 6.12 parents it to the PCI device (kernel-e2e.md, "Non-VGA boot display"). Discovery must find the boot
 * display in both layouts, through the simulated kernel and through a materialised tree read by NodeHost.
 * The profile also has vfio-pci loaded without an IOMMU backend, which prepare must load.
 */
const GPU = '0000:00:02.0' as PciAddress;
const sel = { all: false as const, selectors: parseSelectors([GPU]) };

const LAYOUTS = {
  '6.1 (devices/platform)': { kernelRelease: '6.1.0-57-amd64', parent: undefined, path: 'sys/devices/platform/efi-framebuffer.0' },
  '6.12 (under the PCI device)': {
    kernelRelease: '6.12.117+deb12-amd64',
    parent: GPU,
    path: `sys/devices/pci0000:00/${GPU}/efi-framebuffer.0`,
  },
} as const;

async function profileFor(layout: (typeof LAYOUTS)[keyof typeof LAYOUTS], patch: Partial<HostProfile> = {}): Promise<HostProfile> {
  const base = await loadBuiltinProfile('qemu-bochs-display');
  return {
    ...base,
    kernelRelease: layout.kernelRelease,
    framebuffers: base.framebuffers!.map((f) => ({ ...f, ...(layout.parent ? { parent: layout.parent } : {}) })),
    ...patch,
  };
}

function engine(kernel: SimulatedKernel): HandoffEngine {
  return new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 500 });
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'vfio-handoff-bochs-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe.each(Object.entries(LAYOUTS))('bochs-display with efifb in BAR0, efi-framebuffer.0 layout of %s', (name, layout) => {
  it('the simulated kernel puts efi-framebuffer.0 where that kernel does', async () => {
    const kernel = new SimulatedKernel(await profileFor(layout));
    const link = await kernel.readLink(P.platformDevice('efi-framebuffer.0'));
    expect(`sys/${link?.replace(/^(\.\.\/)+/, '')}`).toBe(layout.path);
  });

  it('discovery names the device the boot display through both host ports (simulated kernel, materialised tree)', async () => {
    const profile = await profileFor(layout);
    const sim = await discoverHost(new SimulatedKernel(profile));
    const dir = join(root, name.replace(/\W+/g, '-'));
    await materialiseProfile(profile, dir);
    const tree = await discoverHost(new NodeHost({ root: dir }));
    expect(tree).toEqual(sim);
    const gpu = sim.gpus.find((g) => g.fn.address === GPU)!;
    expect(gpu).toMatchObject({ kind: 'display', isBootGpu: true, framebuffers: ['efi-framebuffer.0'] });
    expect(gpu.fn.bootVga).toBeUndefined();
    expect(sim.framebuffers).toEqual([
      expect.objectContaining({ device: 'efi-framebuffer.0', driver: 'efi-framebuffer', claim: 'efifb', owner: { address: GPU, bar: 0 }, parent: layout.parent }),
    ]);
  });

  it('without iomem addresses (an unprivileged reader) only the 6.12 parent still points at the device', async () => {
    const kernel = new SimulatedKernel(await profileFor(layout));
    const reader = {
      list: kernel.list.bind(kernel),
      exists: kernel.exists.bind(kernel),
      readLink: kernel.readLink.bind(kernel),
      readText: async (path: string) => {
        const text = await kernel.readText(path);
        return path === P.PROC_IOMEM ? text?.replace(/[0-9a-f]+-[0-9a-f]+ :/g, '00000000-00000000 :') : text;
      },
    };
    const gpu = (await discoverHost(reader)).gpus.find((g) => g.fn.address === GPU)!;
    expect(gpu.isBootGpu).toBe(layout.parent !== undefined);
  });

  it('inspect blocks it without --allow-boot-gpu and writes nothing', async () => {
    const kernel = new SimulatedKernel(await profileFor(layout));
    const report = await engine(kernel).inspect({ allowBootGpu: false });
    const a = report.assessments.find((x) => x.gpu.fn.address === GPU)!;
    expect(a.verdict).toBe('blocked');
    expect(a.reasons.map((r) => r.code)).toEqual(['BOOT_GPU_NOT_PERMITTED']);
    await expect(engine(kernel).prepare(sel, { allowBootGpu: false })).rejects.toMatchObject({ code: 'BLOCKED' });
    expect(kernel.writeLog).toEqual([]);
  });

  it('a bind-only leaves efifb in BAR0 (vfio-pci removes nothing for class 0x0380), so the GPU is not ready', async () => {
    const kernel = new SimulatedKernel(await profileFor(layout));
    await kernel.writeText(P.pciAttribute(GPU, 'driver_override'), 'vfio-pci');
    await kernel.writeText(P.PCI_DRIVERS_PROBE, GPU);
    expect(kernel.state().framebuffers.map((f) => `${f.device}:${f.driver}`)).toEqual(['efi-framebuffer.0:efi-framebuffer']);
    const a = (await engine(kernel).inspect({ allowBootGpu: true })).assessments.find((x) => x.gpu.fn.address === GPU)!;
    expect(a.verdict).toBe('preparable');
  });

  it('prepare --allow-boot-gpu loads the IOMMU backend, releases console and efifb, binds vfio-pci; release gives efifb back', async () => {
    const kernel = new SimulatedKernel(await profileFor(layout));
    const sut = engine(kernel);
    const before = await discoverHost(kernel);
    expect(before.vfioIommuType1).toEqual({ loaded: false, loadable: true });
    expect(vfioIommuBackendAvailable(before)).toBe(false);
    const report = await sut.inspect({ allowBootGpu: true });
    expect(planSteps(report.plans.get(GPU)!).map((s) => `${s.kind} ${s.kind === 'load-module' ? s.module : ''}`.trim())).toEqual([
      'load-module vfio_iommu_type1',
      'unbind-vtconsole',
      'unbind-framebuffer',
      'set-override',
      'probe',
      'verify-group',
    ]);
    const done = await sut.prepare(sel, { allowBootGpu: true });
    expect(done.outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    expect(done.preamble.map((o) => o.outcome)).toEqual(['done']);
    expect(kernel.writeLog.filter((w) => w.kind === 'modprobe').map((w) => w.value)).toEqual(['vfio_iommu_type1']);
    const after = await discoverHost(kernel);
    expect(after.vfioIommuType1.loaded).toBe(true);
    expect(after.framebuffers[0]?.driver).toBeUndefined();
    expect((await sut.inspect({ allowBootGpu: false })).assessments.find((x) => x.gpu.fn.address === GPU)!.verdict).toBe('ready');
    await sut.release(sel, {});
    // The platform device survives a non-VGA vfio-pci bind, so efifb and fbcon come back.
    expect(kernel.state().framebuffers.map((f) => `${f.device}:${f.driver}`)).toEqual(['efi-framebuffer.0:efi-framebuffer']);
  });
});

describe('the VFIO IOMMU backend', () => {
  const layout = LAYOUTS['6.1 (devices/platform)'];

  it('is not loaded again when iommufd is there (/dev/iommu)', async () => {
    const kernel = new SimulatedKernel(await profileFor(layout, { iommufd: true }));
    const snap = await discoverHost(kernel);
    expect(vfioIommuBackendAvailable(snap)).toBe(true);
    const report = await engine(kernel).inspect({ allowBootGpu: true });
    expect(planSteps(report.plans.get(GPU)!).map((s) => s.kind)).not.toContain('load-module');
  });

  it('is pulled in by modprobe vfio-pci (vfio softdep) on a host without either: the planned type1 load is then skipped', async () => {
    const kernel = new SimulatedKernel(await profileFor(layout, { loadedDrivers: ['virtio-pci'], loadedModules: undefined }));
    const sut = engine(kernel);
    const report = await sut.inspect({ allowBootGpu: true });
    expect(planSteps(report.plans.get(GPU)!).filter((s) => s.kind === 'load-module').map((s) => (s.kind === 'load-module' ? s.module : ''))).toEqual([
      'vfio-pci',
      'vfio_iommu_type1',
    ]);
    const done = await sut.prepare(sel, { allowBootGpu: true });
    expect(done.preamble.map((o) => o.outcome)).toEqual(['done', 'skipped']);
    expect(kernel.state().loadedModules).toContain('vfio_iommu_type1');
  });

  it('a failing modprobe vfio_iommu_type1 fails prepare before any sysfs write', async () => {
    const kernel = new SimulatedKernel(await profileFor(layout));
    kernel.injectFault({ path: 'modprobe:vfio_iommu_type1', errno: 'EIO' });
    const done = await engine(kernel).prepare(sel, { allowBootGpu: true });
    expect(done.preamble).toEqual([expect.objectContaining({ outcome: 'failed', error: expect.objectContaining({ code: 'HOST_WRITE_FAILED' }) })]);
    expect(done.outcomes.map((o) => o.outcome)).toEqual(['failed']);
    expect(kernel.writeLog.filter((w) => w.kind === 'write')).toEqual([]);
    expect(kernel.state().framebuffers.map((f) => `${f.device}:${f.driver}`)).toEqual(['efi-framebuffer.0:efi-framebuffer']);
  });

  it('is reported missing when vfio_iommu_type1 is neither loaded nor in the module index', async () => {
    const kernel = new SimulatedKernel(await profileFor(layout));
    const snap = await discoverHost({
      list: kernel.list.bind(kernel),
      exists: kernel.exists.bind(kernel),
      readLink: kernel.readLink.bind(kernel),
      readText: async (path: string) => {
        const text = await kernel.readText(path);
        return path.endsWith('modules.dep') ? text?.replace(/^.*vfio_iommu_type1.*\n/m, '') : text;
      },
    });
    expect(snap.vfioIommuType1).toEqual({ loaded: false, loadable: false });
  });
});

describe('BAR claims by the GPU\'s own driver (e2e: bochs-drm holds c0000000-c0ffffff inside BAR0 of 00:02.0)', () => {
  async function assessWithClaim(name: string) {
    const { assessGpu } = await import('../../../src/handoff/verdict.js');
    const kernel = new SimulatedKernel(await loadBuiltinProfile('qemu-vga-hda'));
    await kernel.loadModule('bochs');
    const snap = await discoverHost(kernel);
    const gpu = snap.gpus.find((g) => g.fn.address === GPU)!;
    expect(gpu.fn.driver).toBe('bochs-drm');
    const claim = { address: GPU, bar: 0, name, start: 0xc0000000n, end: 0xc0ffffffn, firmwareFramebuffer: false };
    return assessGpu({ ...snap, barClaims: [claim] }, gpu, { allowBootGpu: true });
  }

  it('a claim under the bound driver\'s name is released by the planned unbind: preparable', async () => {
    const a = await assessWithClaim('bochs-drm');
    expect(a.reasons.map((r) => r.code)).not.toContain('BAR_CLAIMED');
    expect(a.verdict).toBe('preparable');
  });

  it('a claim by anything else still blocks (BAR_CLAIMED)', async () => {
    const a = await assessWithClaim('some-other-driver');
    expect(a.reasons.map((r) => r.code)).toContain('BAR_CLAIMED');
    expect(a.verdict).toBe('blocked');
  });
});
