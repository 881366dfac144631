import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { planSteps } from '../../../src/handoff/plan.js';
import { listBuiltinProfiles, loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

type Row = [address: string, verdict: string, reasons: string[], roles?: string];

/** Expected verdicts per built-in profile (hosts.md shapes); roles: the group members' roles in address order. */
const EXPECTED: Record<string, Row[]> = {
  'server-aspeed-4xh100': [
    ['0000:02:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED'], 'bridge gpu'],
    ['0000:18:00.0', 'preparable', [], 'gpu'],
    ['0000:3b:00.0', 'preparable', [], 'gpu'],
    ['0000:9b:00.0', 'preparable', [], 'gpu'],
    ['0000:bb:00.0', 'preparable', [], 'gpu'],
  ],
  'server-aspeed-l40s-vfio': [
    ['0000:02:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED']],
    ['0000:18:00.0', 'ready', []],
    ['0000:3b:00.0', 'ready', []],
    ['0000:9b:00.0', 'ready', []],
    ['0000:bb:00.0', 'ready', []],
  ],
  'workstation-efifb': [['0000:01:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED'], 'bridge gpu companion']],
  'workstation-simpledrm': [['0000:01:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED'], 'bridge gpu companion']],
  'turing-usb-ucsi': [
    ['0000:03:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED']],
    ['0000:1b:00.0', 'preparable', [], 'gpu companion companion companion'],
    ['0000:1c:00.0', 'preparable', [], 'gpu companion companion companion'],
  ],
  'foreign-usb-in-group': [
    ['0000:00:02.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED']],
    ['0000:01:00.0', 'blocked', ['FOREIGN_DEVICE'], 'bridge bridge gpu companion foreign'],
  ],
  'iommu-off': [
    ['0000:01:00.0', 'blocked', ['IOMMU_OFF']],
    ['0000:91:00.0', 'blocked', ['IOMMU_OFF']],
    ['0000:c4:00.0', 'blocked', ['IOMMU_OFF', 'BOOT_GPU_NOT_PERMITTED']],
  ],
  'arm64-domain-0004': [['0004:01:00.0', 'preparable', [], 'gpu companion']],
  'intel-arc-separate-groups': [
    ['0000:07:00.0', 'preparable', [], 'gpu'],
    ['0000:0f:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED'], 'gpu'],
  ],
  'mi300x-sriov': [
    ['0000:05:00.0', 'preparable', []],
    ['0000:85:00.0', 'blocked', ['SRIOV_VFS_ENABLED']],
    ['0000:85:02.0', 'ready', [], 'gpu'],
    ['0000:c4:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED']],
  ],
  'apu-0380-simpledrm-vfio': [['0000:c3:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED'], 'gpu']],
  'qemu-bochs-display': [['0000:00:02.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED'], 'gpu']],
  'apu-laptop-shared-group': [
    ['0000:04:00.0', 'blocked', ['FOREIGN_DEVICE', 'FOREIGN_DEVICE', 'FOREIGN_DEVICE', 'FOREIGN_DEVICE', 'FOREIGN_DEVICE', 'BOOT_GPU_NOT_PERMITTED'], 'bridge bridge gpu companion foreign foreign foreign foreign foreign'],
  ],
  't400-bound-by-other-tool': [['0000:86:00.0', 'preparable', [], 'gpu companion']],
  'grace-domain-0009-no-group': [['0009:01:00.0', 'blocked', ['NO_IOMMU_GROUP']]],
  'rpi5-no-iommu': [['0001:01:00.0', 'blocked', ['IOMMU_OFF']]],
  'intel-igpu-sriov-vfs': [
    ['0000:00:02.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED', 'SRIOV_VFS_ENABLED'], 'gpu'],
    ['0000:00:02.1', 'ready', [], 'gpu'],
    ...['2', '3', '4', '5', '6', '7'].map((f): Row => [`0000:00:02.${f}`, 'preparable', [], 'gpu']),
  ],
  'bench-16gpu': [
    ['0000:02:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED']],
    ...['11', '1f', '2d', '3b', '49', '57', '65', '73', '81', '8f', '9d', 'ab', 'b9', 'c7', 'd5', 'e3'].map(
      (bus): Row => [`0000:${bus}:00.0`, 'preparable', [], 'gpu companion'],
    ),
  ],
  // The NVSwitches (class 0x0680) are bridges, not GPUs: only the H100s and the BMC get verdicts.
  'hgx-nvswitch': [
    ['0000:02:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED']],
    ['0000:18:00.0', 'preparable', [], 'gpu'],
    ['0000:2a:00.0', 'preparable', [], 'gpu'],
    ['0000:9b:00.0', 'preparable', [], 'gpu'],
    ['0000:ca:00.0', 'preparable', [], 'gpu'],
  ],
  'numa-unknown': [
    ['0000:02:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED']],
    ['0000:3d:00.0', 'preparable', [], 'gpu'],
    ['0000:b1:00.0', 'preparable', [], 'gpu'],
  ],
  'workstation-efifb-6.1': [
    ['0000:01:00.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED'], 'bridge gpu companion'],
    ['0000:03:00.0', 'preparable', [], 'gpu companion'],
  ],
  'qemu-vga-hda': [
    ['0000:00:02.0', 'blocked', ['BOOT_GPU_NOT_PERMITTED'], 'gpu companion'],
    ['0000:00:03.0', 'preparable', [], 'gpu'],
  ],
};

describe('verdicts over the built-in host profiles', () => {
  it('has rows for every built-in profile, and every row is a built-in profile', async () => {
    expect(Object.keys(EXPECTED).sort()).toEqual([...(await listBuiltinProfiles())].sort());
  });

  for (const [name, rows] of Object.entries(EXPECTED)) {
    it(`${name}`, async () => {
      const kernel = new SimulatedKernel(await loadBuiltinProfile(name));
      const sut = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger });
      const report = await sut.inspect({ allowBootGpu: false });
      const got = report.assessments.map((a) => a.gpu.fn.address);
      expect(got).toEqual(rows.map((r) => r[0]));
      for (const [address, verdict, reasons, roles] of rows) {
        const a = report.assessments.find((x) => x.gpu.fn.address === address)!;
        expect(a.verdict, address).toBe(verdict);
        expect(a.reasons.map((r) => r.code), address).toEqual(reasons);
        if (roles) expect(a.members.map((m) => m.role).join(' '), address).toBe(roles);
        // A preparable GPU always has a plan that ends by verifying its group; others have none.
        const plan = report.plans.get(a.gpu.fn.address);
        if (verdict === 'preparable') expect(planSteps(plan!).at(-1)?.kind).toBe('verify-group');
        else expect(plan).toBeUndefined();
      }
    });
  }

  // The other way: with --allow-boot-gpu the boot GPU's only objection goes, nothing else changes.
  for (const [name, rows] of Object.entries(EXPECTED)) {
    it(`${name} with --allow-boot-gpu`, async () => {
      const kernel = new SimulatedKernel(await loadBuiltinProfile(name));
      const sut = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger });
      const report = await sut.inspect({ allowBootGpu: true });
      expect(report.assessments.map((a) => a.gpu.fn.address)).toEqual(rows.map((r) => r[0]));
      for (const [address, verdict, reasons] of rows) {
        const a = report.assessments.find((x) => x.gpu.fn.address === address)!;
        const left = reasons.filter((r) => r !== 'BOOT_GPU_NOT_PERMITTED');
        expect(a.reasons.map((r) => r.code), address).toEqual(left);
        expect(a.verdict, address).toBe(verdict === 'ready' ? 'ready' : left.length > 0 ? 'blocked' : 'preparable');
        const boot = a.gpu.isBootGpu && verdict !== 'ready';
        expect(a.warnings.some((w) => w.code === 'BOOT_GPU'), address).toBe(boot);
      }
    });
  }

  it('names the foreign device by address, class and driver', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('foreign-usb-in-group'));
    const sut = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger });
    const a = (await sut.inspect({ allowBootGpu: true })).assessments.find((x) => x.gpu.fn.address === '0000:01:00.0')!;
    expect(a.reasons[0]?.message).toMatch(/0000:02:00\.0 \(USB controller 0x0c0330, [0-9a-f]{4}:[0-9a-f]{4}, driver xhci_hcd\)/);
    await expect(sut.prepare({ all: false, selectors: [{ kind: 'address', address: a.gpu.fn.address }] }, { allowBootGpu: true })).rejects.toMatchObject({ code: 'BLOCKED' });
    expect(kernel.writeLog).toEqual([]);
  });

  it('warns on 6.1-era kernels that any VGA bind removes the boot framebuffer, and not on 6.12', async () => {
    const base = await loadBuiltinProfile('workstation-efifb-6.1');
    // The same two-VGA host booted on 6.1 and on 6.12: only the kernel differs.
    for (const [release, expectWarn] of [['6.1.0-56-amd64', true], ['6.12.117+deb12-amd64', false], ['6.4.16', true], ['5.15.0-119-generic', false]] as const) {
      const name = release;
      const kernel = new SimulatedKernel({ ...base, kernelRelease: release });
      const sut = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger });
      const report = await sut.inspect({ allowBootGpu: false });
      const secondary = report.assessments.filter((a) => !a.gpu.isBootGpu && a.gpu.kind === 'vga');
      expect(secondary.length).toBeGreaterThan(0);
      const warned = secondary.some((a) => a.warnings.some((w) => w.code === 'SYSFB_REMOVED_BY_ANY_VGA'));
      expect(warned, name).toBe(expectWarn);
    }
  });
});
