import type { PciAddress } from '../core/pci-address.js';
import { kernelAtLeast } from '../host/kernel-version.js';
import type { Gpu, HostSnapshot, IommuPlatform } from '../host/model.js';
import { knownResetQuirk } from '../host/vendor.js';
import { describeClass, endpoints, formatClass, groupMembers, VFIO_DRIVER, type GroupMember } from './group.js';
import { sysfbRemoval } from './kernel-rules.js';
import type { ReasonCode, WarningCode } from '../api/v1alpha1/reasons.js';
import { barClaimsOf, notReady } from '../host/readiness.js';

export type Verdict = 'ready' | 'preparable' | 'blocked';

export { REASON_CODES, WARNING_CODES, type ReasonCode, type WarningCode } from '../api/v1alpha1/reasons.js';

export interface Finding<C extends string> {
  readonly code: C;
  readonly message: string;
}

/** A process holding a device file of the GPU (found by src/host/device-users.ts); blocks the unbind. */
export interface DeviceUser {
  readonly address: PciAddress;
  readonly pid: number;
  readonly command: string;
  readonly path: string;
}

export interface AssessOptions {
  readonly allowBootGpu: boolean;
  readonly users?: readonly DeviceUser[];
}

export interface Assessment {
  readonly gpu: Gpu;
  readonly verdict: Verdict;
  readonly members: readonly GroupMember[];
  readonly reasons: readonly Finding<ReasonCode>[];
  readonly warnings: readonly Finding<WarningCode>[];
}

/**
 * The verdict for one GPU — pure: everything it needs is in the snapshot. `ready` means a VM can have
 * it now; `preparable` means `prepare` would get it there; `blocked` lists every reason it cannot.
 */
export function assessGpu(snapshot: HostSnapshot, gpu: Gpu, opts: AssessOptions): Assessment {
  const members = groupMembers(snapshot, gpu);
  const group = gpu.fn.iommuGroup;
  const reasons: Finding<ReasonCode>[] = [];
  const warnings: Finding<WarningCode>[] = [];
  const eps = endpoints(members);

  const foreign = members.filter((m) => m.role === 'foreign');

  if (!snapshot.iommuEnabled) {
    reasons.push({ code: 'IOMMU_OFF', message: iommuOffAdvice(snapshot.platform ?? 'unknown') });
  } else if (group === undefined) {
    reasons.push({ code: 'NO_IOMMU_GROUP', message: noGroupAdvice(gpu, snapshot.platform ?? 'unknown') });
  }

  // The one readiness rule (src/host/readiness.ts): the plugin and the agent ask the same question.
  if (notReady(snapshot, gpu.fn.address) === undefined) {
    for (const f of foreign) {
      warnings.push({
        code: 'FOREIGN_DEVICE_ON_VFIO',
        message: `${describeMember(f)} shares IOMMU group ${group} and goes to the VM with the GPU`,
      });
    }
    const reset = resetWarning(snapshot, gpu);
    if (reset) warnings.push(reset);
    return { gpu, verdict: 'ready', members, reasons, warnings };
  }

  const listed = snapshot.groups.find((g) => g.id === group)?.members ?? [];
  for (const address of listed) {
    if (members.some((m) => m.fn.address === address)) continue;
    // Listed in the group but unreadable (vanished mid-scan or garbage ids): we cannot vouch for it.
    reasons.push({
      code: 'FOREIGN_DEVICE',
      message: `${address} shares IOMMU group ${group} but could not be read; the group cannot be judged safe`,
    });
  }
  for (const f of foreign) {
    if (f.fn.driver === VFIO_DRIVER) continue; // someone already gave it to vfio: it no longer blocks, see ready
    reasons.push({
      code: 'FOREIGN_DEVICE',
      message: `${describeMember(f)} shares IOMMU group ${group} but is not part of this GPU; it would have to go to the VM too`,
    });
  }
  if (gpu.isBootGpu && !opts.allowBootGpu) {
    reasons.push({
      code: 'BOOT_GPU_NOT_PERMITTED',
      message: `${gpu.fn.address} is the boot GPU (firmware console${gpu.framebuffers.length ? ` on ${gpu.framebuffers.join(', ')}` : ''}); pass --allow-boot-gpu to take it`,
    });
  }
  // vfio hands out the group whole: a boot GPU among the group's other GPUs goes to vfio-pci with this one.
  const bootMates = group === undefined ? [] : snapshot.gpus.filter((g) => g.fn.iommuGroup === group && g.fn.address !== gpu.fn.address && g.isBootGpu);
  if (bootMates.length > 0 && !opts.allowBootGpu) {
    reasons.push({
      code: 'BOOT_GPU_NOT_PERMITTED',
      message: `${gpu.fn.address} shares IOMMU group ${group} with the boot GPU ${bootMates.map((g) => g.fn.address).join(', ')}, which goes to vfio-pci with it (its firmware console goes dark); pass --allow-boot-gpu to take both`,
    });
  }
  if (!snapshot.vfioPci.loaded && !snapshot.vfioPci.loadable) {
    reasons.push({ code: 'VFIO_PCI_MISSING', message: 'the vfio-pci driver is neither loaded nor available as a module for this kernel' });
  }
  for (const m of eps) {
    if ((m.fn.sriovNumVfs ?? 0) > 0) {
      reasons.push({
        code: 'SRIOV_VFS_ENABLED',
        message: `${m.fn.address} has ${m.fn.sriovNumVfs} SR-IOV VFs enabled; vfio-pci refuses a PF with VFs (disable them: echo 0 > sriov_numvfs)`,
      });
    }
  }
  // Claims in the GPU's BARs that no planned step releases (only a bound firmware framebuffer driver
  // of this GPU is released by prepare): the VMM's BAR mmap would fail with `can't reserve`.
  const releasable = snapshot.framebuffers.filter((fb) => fb.driver !== undefined && (fb.owner?.address === gpu.fn.address || gpu.framebuffers.includes(fb.device)));
  for (const c of barClaimsOf(snapshot, gpu.fn.address)) {
    if (releasable.some((fb) => fb.range === undefined || (fb.range.start <= c.end && c.start <= fb.range.end))) continue;
    // The GPU's own driver (pci_request_regions under its name, e.g. `bochs-drm`, seen on Debian 6.1/6.12 in the
    // e2e guests) lets go of its BARs at the unbind-driver step prepare plans: not a conflict.
    if (gpu.fn.driver !== undefined && c.name === gpu.fn.driver) continue;
    reasons.push({
      code: 'BAR_CLAIMED',
      message: `${c.name} holds BAR ${c.bar} of ${gpu.fn.address} and no framebuffer driver that prepare could release owns it; a VMM could not map that BAR`,
    });
  }
  for (const u of opts.users ?? []) {
    if (!eps.some((m) => m.fn.address === u.address)) continue;
    reasons.push({
      code: 'HOST_DRIVER_BUSY',
      message: `${u.address} is in use on the host: pid ${u.pid} (${u.command}) holds ${u.path}`,
    });
  }

  if (opts.allowBootGpu) {
    for (const g of [gpu, ...bootMates].filter((x) => x.isBootGpu)) {
      warnings.push({ code: 'BOOT_GPU', message: `${g.fn.address} is the boot GPU; the host loses its console on it` });
    }
  }
  const boundFbs = snapshot.framebuffers.filter((fb) => fb.driver !== undefined);
  const fbconBound = snapshot.vtconsoles.some((v) => v.kind === 'fbcon' && v.bound);
  // Prepare releases the framebuffers of every GPU of the group (src/handoff/plan.ts), a boot mate's too.
  const owned = boundFbs.filter((fb) => [gpu, ...bootMates].some((g) => fb.owner?.address === g.fn.address || g.framebuffers.includes(fb.device)));
  if (owned.length > 0) {
    warnings.push({
      code: 'CONSOLE_WILL_GO_DARK',
      message: `${owned.map((f) => f.device).join(', ')} (${owned.map((f) => f.claim ?? f.driver).join(', ')}) ${fbconBound ? 'and the framebuffer console ' : ''}will be released: the local console goes dark`,
    });
  }
  const removal = sysfbRemoval(snapshot.kernel);
  if (gpu.kind === 'vga' && removal === 'any-vga') {
    const others = snapshot.framebuffers.filter((fb) => !owned.includes(fb));
    if (others.length > 0) {
      warnings.push({
        code: 'SYSFB_REMOVED_BY_ANY_VGA',
        message: `on kernel ${snapshot.kernel.release ?? '?'} binding any VGA-class GPU to vfio-pci also removes the boot framebuffer ${others.map((f) => f.device).join(', ')}: the boot console goes dark`,
      });
    }
  }
  if (gpu.kind === 'vga' && removal !== 'none' && (owned.length > 0 || (removal === 'any-vga' && snapshot.framebuffers.length > 0))) {
    warnings.push({
      code: 'FRAMEBUFFER_NOT_RESTORABLE',
      message: 'vfio-pci unregisters the firmware framebuffer for good; after release the console returns only with a native GPU driver or a reboot',
    });
  }
  const reset = resetWarning(snapshot, gpu);
  if (reset) warnings.push(reset);

  return { gpu, verdict: reasons.length > 0 ? 'blocked' : 'preparable', members, reasons, warnings };
}

/**
 * Reset advice. `reset_method` exists since Linux 5.15 (kernel.md §1.2): on older kernels its absence
 * says nothing, so the method is unknown (RESET_METHOD_UNKNOWN) rather than missing (NO_RESET_METHOD).
 */
function resetWarning(snapshot: HostSnapshot, gpu: Gpu): Finding<WarningCode> | undefined {
  if (gpu.fn.resetMethods.length > 0) return undefined;
  if (kernelAtLeast(snapshot.kernel, 5, 15) === false) {
    return {
      code: 'RESET_METHOD_UNKNOWN',
      message: `kernel ${snapshot.kernel.release ?? '?'} predates the reset_method file (5.15): the reset method of ${gpu.fn.address} is unknown here; vfio-pci tries FLR, PM and bus reset when the VM opens it`,
    };
  }
  const quirk = knownResetQuirk(gpu.fn);
  return {
    code: 'NO_RESET_METHOD',
    message: `${gpu.fn.address} offers no reset method${quirk ? ` (${quirk})` : ''}; the VM may find it in a dirty state after a guest reboot`,
  };
}

/** IOMMU_OFF advice for the platform (kernel.md §3.6): Intel VT-d, AMD-Vi, or the Arm SMMU on arm64. */
export function iommuOffAdvice(platform: IommuPlatform): string {
  switch (platform) {
    case 'intel':
      return 'the IOMMU is off: enable VT-d in firmware and boot with intel_iommu=on';
    case 'amd':
      return 'the IOMMU is off: enable AMD-Vi (IOMMU) in firmware; amd_iommu is on by default, so remove amd_iommu=off if set';
    case 'arm-smmu':
      return 'the IOMMU is off: on arm64 PCIe devices are isolated by the Arm SMMU — enable it in firmware (ACPI IORT or the device tree\'s iommu-map) and use a kernel with arm-smmu-v3; a root complex without an SMMU in front of it (e.g. Raspberry Pi) cannot pass devices through';
    default:
      return 'the IOMMU is off: enable it in firmware (Intel VT-d / AMD-Vi; arm64: the SMMU) and boot with intel_iommu=on on Intel hosts';
  }
}

function noGroupAdvice(gpu: Gpu, platform: IommuPlatform): string {
  const domain = gpu.fn.address.slice(0, 4);
  if (platform === 'arm-smmu') {
    return `${gpu.fn.address} has no IOMMU group while other devices have one: the SMMU does not cover PCI domain ${domain} (check the firmware's IORT / iommu-map for that root complex)`;
  }
  return `${gpu.fn.address} has no IOMMU group while other devices have one: the IOMMU does not cover it (check the firmware's DMAR/IVRS tables for PCI domain ${domain})`;
}

function describeMember(m: GroupMember): string {
  const fn = m.fn;
  return `${fn.address} (${describeClass(fn.classCode)} ${formatClass(fn.classCode)}, ${fn.vendorId}:${fn.deviceId}, driver ${fn.driver ?? 'none'})`;
}
