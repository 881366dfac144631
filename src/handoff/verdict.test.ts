/**
 * IOMMU_OFF advice per platform (kernel.md §3.6): each names the firmware switch and boot parameter of its own
 * platform only; a host whose platform could not be told gets the advice for all of them. Then the messages and
 * conditions of reasons and warnings on built-in hosts, written out here.
 */
import { describe, expect, it } from 'vitest';
import type { PciAddress } from '../core/pci-address.js';
import { discoverHost } from '../host/discover.js';
import type { HostSnapshot } from '../host/model.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { assessGpu, iommuOffAdvice } from './verdict.js';

describe('iommuOffAdvice', () => {
  it('unknown platform: VT-d, AMD-Vi and the arm64 SMMU are all named, with intel_iommu=on for Intel hosts', () => {
    expect(iommuOffAdvice('unknown')).toBe(
      'the IOMMU is off: enable it in firmware (Intel VT-d / AMD-Vi; arm64: the SMMU) and boot with intel_iommu=on on Intel hosts',
    );
  });
  it('each known platform gets only its own advice', () => {
    expect(iommuOffAdvice('intel')).toBe('the IOMMU is off: enable VT-d in firmware and boot with intel_iommu=on');
    expect(iommuOffAdvice('amd')).toMatch(/^the IOMMU is off: enable AMD-Vi \(IOMMU\) in firmware; amd_iommu is on by default, so remove amd_iommu=off if set$/);
    expect(iommuOffAdvice('arm-smmu')).toMatch(/^the IOMMU is off: on arm64 PCIe devices are isolated by the Arm SMMU/);
    expect(iommuOffAdvice('arm-smmu')).not.toMatch(/intel_iommu|VT-d|AMD-Vi/);
  });
});

describe('assessGpu messages and conditions, on built-in hosts', () => {
  async function snapshotOf(profile: string, setup?: (k: SimulatedKernel) => Promise<void>) {
    const kernel = new SimulatedKernel(await loadBuiltinProfile(profile));
    await setup?.(kernel);
    return discoverHost(kernel);
  }
  const gpuOf = (s: HostSnapshot, address: string) => s.gpus.find((g) => g.fn.address === address)!;

  it('BOOT_GPU_NOT_PERMITTED names the firmware framebuffer in the GPU (workstation-efifb: efi-framebuffer.0)', async () => {
    const s = await snapshotOf('workstation-efifb');
    const a = assessGpu(s, gpuOf(s, '0000:01:00.0'), { allowBootGpu: false });
    expect(a.reasons).toEqual([
      { code: 'BOOT_GPU_NOT_PERMITTED', message: '0000:01:00.0 is the boot GPU (firmware console on efi-framebuffer.0); pass --allow-boot-gpu to take it' },
    ]);
  });

  it('BAR_CLAIMED names the claimant and the BAR (qemu-vga-hda with bochs-drm bound, a claim by another name in BAR 0)', async () => {
    const s = await snapshotOf('qemu-vga-hda', (k) => k.loadModule('bochs'));
    const claim = { address: '0000:00:02.0' as PciAddress, bar: 0, name: 'some-other-driver', start: 0xc0000000n, end: 0xc0ffffffn, firmwareFramebuffer: false };
    const a = assessGpu({ ...s, barClaims: [claim] }, gpuOf(s, '0000:00:02.0'), { allowBootGpu: true });
    expect(a.reasons).toEqual([
      {
        code: 'BAR_CLAIMED',
        message: 'some-other-driver holds BAR 0 of 0000:00:02.0 and no framebuffer driver that prepare could release owns it; a VMM could not map that BAR',
      },
    ]);
  });

  it('HOST_DRIVER_BUSY for a process holding any endpoint of the group (the audio function too), not for devices outside it', async () => {
    const s = await snapshotOf('workstation-efifb');
    const users = [
      { address: '0000:01:00.1' as PciAddress, pid: 99, command: 'pipewire', path: '/dev/snd/controlC1' },
      { address: '0000:02:00.0' as PciAddress, pid: 7, command: 'systemd-udevd', path: '/dev/nvme0' },
    ];
    const a = assessGpu(s, gpuOf(s, '0000:01:00.0'), { allowBootGpu: true, users });
    expect(a.reasons).toEqual([{ code: 'HOST_DRIVER_BUSY', message: '0000:01:00.1 is in use on the host: pid 99 (pipewire) holds /dev/snd/controlC1' }]);
  });

  it('kernel 6.1 (sysfb removed by any VGA bind): the second VGA GPU is warned that the boot framebuffer goes; the boot GPU, which owns it, is not', async () => {
    const s = await snapshotOf('workstation-efifb-6.1');
    const second = assessGpu(s, gpuOf(s, '0000:03:00.0'), { allowBootGpu: false });
    expect(second.warnings.filter((w) => w.code === 'SYSFB_REMOVED_BY_ANY_VGA')).toEqual([
      {
        code: 'SYSFB_REMOVED_BY_ANY_VGA',
        message: 'on kernel 6.1.0-56-amd64 binding any VGA-class GPU to vfio-pci also removes the boot framebuffer efi-framebuffer.0: the boot console goes dark',
      },
    ]);
    const boot = assessGpu(s, gpuOf(s, '0000:01:00.0'), { allowBootGpu: true });
    expect(boot.warnings.map((w) => w.code)).toContain('CONSOLE_WILL_GO_DARK');
    expect(boot.warnings.map((w) => w.code)).not.toContain('SYSFB_REMOVED_BY_ANY_VGA');
  });
});

describe('FRAMEBUFFER_NOT_RESTORABLE on kernel 6.1 (vfio-pci unregisters sysfb on any VGA bind)', () => {
  it('a secondary VGA GPU gets it while a firmware framebuffer exists, and not on the same host booted without one', async () => {
    const profile = await loadBuiltinProfile('workstation-efifb-6.1');
    const withFb = await discoverHost(new SimulatedKernel(profile));
    const second = withFb.gpus.find((g) => g.fn.address === '0000:03:00.0')!;
    expect(assessGpu(withFb, second, { allowBootGpu: false }).warnings.map((w) => w.code)).toContain('FRAMEBUFFER_NOT_RESTORABLE');
    const noFb = await discoverHost(new SimulatedKernel({ ...profile, framebuffers: [], vtconsoles: [] }));
    const again = noFb.gpus.find((g) => g.fn.address === '0000:03:00.0')!;
    expect(noFb.framebuffers).toEqual([]);
    expect(assessGpu(noFb, again, { allowBootGpu: false }).warnings.map((w) => w.code)).not.toContain('FRAMEBUFFER_NOT_RESTORABLE');
  });
});

describe('reset advice on a kernel before 5.15 (no reset_method file)', () => {
  it('RESET_METHOD_UNKNOWN names the running kernel and the GPU', async () => {
    const profile = { ...(await loadBuiltinProfile('server-aspeed-4xh100')), kernelRelease: '5.10.0-30-amd64' };
    const s = await discoverHost(new SimulatedKernel(profile));
    const gpu = s.gpus.find((g) => g.fn.address === '0000:18:00.0')!;
    expect(gpu.fn.resetMethods).toEqual([]);
    expect(assessGpu(s, gpu, { allowBootGpu: false }).warnings).toContainEqual({
      code: 'RESET_METHOD_UNKNOWN',
      message:
        'kernel 5.10.0-30-amd64 predates the reset_method file (5.15): the reset method of 0000:18:00.0 is unknown here; vfio-pci tries FLR, PM and bus reset when the VM opens it',
    });
  });
});

describe('advice texts that depend on the host', () => {
  async function snapshotOf(profile: string) {
    return discoverHost(new SimulatedKernel(await loadBuiltinProfile(profile)));
  }
  /** The snapshot with one function changed, as discovery would have read it. */
  function withFn(s: HostSnapshot, address: string, change: Partial<HostSnapshot['functions'][number]>): HostSnapshot {
    const fn = (f: HostSnapshot['functions'][number]) => (f.address === address ? { ...f, ...change } : f);
    return { ...s, functions: s.functions.map(fn), gpus: s.gpus.map((g) => ({ ...g, fn: fn(g.fn) })) };
  }

  it('NO_IOMMU_GROUP on an x86 host points at DMAR/IVRS for the GPU\u2019s PCI domain (four digits)', async () => {
    const s = withFn(await snapshotOf('server-aspeed-4xh100'), '0000:18:00.0', { iommuGroup: undefined });
    const a = assessGpu(s, s.gpus.find((g) => g.fn.address === '0000:18:00.0')!, { allowBootGpu: false });
    expect(a.reasons).toEqual([
      {
        code: 'NO_IOMMU_GROUP',
        message: "0000:18:00.0 has no IOMMU group while other devices have one: the IOMMU does not cover it (check the firmware's DMAR/IVRS tables for PCI domain 0000)",
      },
    ]);
  });

  it('NO_RESET_METHOD without a known quirk says only that there is none (H100 10de:2331 has no NVIDIA bus-reset quirk)', async () => {
    const s = withFn(await snapshotOf('server-aspeed-4xh100'), '0000:18:00.0', { resetMethods: [] });
    const a = assessGpu(s, s.gpus.find((g) => g.fn.address === '0000:18:00.0')!, { allowBootGpu: false });
    expect(a.warnings).toContainEqual({ code: 'NO_RESET_METHOD', message: '0000:18:00.0 offers no reset method; the VM may find it in a dirty state after a guest reboot' });
  });

  it('FOREIGN_DEVICE describes an unbound foreign function as "driver none" (foreign-usb-in-group: xhci 0000:02:00.0 unbound)', async () => {
    const s = withFn(await snapshotOf('foreign-usb-in-group'), '0000:02:00.0', { driver: undefined });
    const a = assessGpu(s, s.gpus.find((g) => g.fn.address === '0000:01:00.0')!, { allowBootGpu: false });
    expect(a.reasons).toContainEqual({
      code: 'FOREIGN_DEVICE',
      message: '0000:02:00.0 (USB controller 0x0c0330, 8086:15f0, driver none) shares IOMMU group 1 but is not part of this GPU; it would have to go to the VM too',
    });
  });
});
