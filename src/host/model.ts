import type { PciAddress } from '../core/pci-address.js';

/**
 * The read model of a host, produced by discovery (src/host/discover.ts) and consumed by the verdict
 * logic, the planner, the device plugin and the agent's status report. Every value is immutable;
 * absence is `undefined` (never -1 or "").
 */

export interface Bar {
  readonly index: number; // 0-5 = BARs, 6 = expansion ROM
  readonly start: bigint;
  readonly end: bigint; // inclusive, as in /proc/iomem and the `resource` file
  readonly flags: bigint;
}

export type GpuKind = 'vga' | '3d' | 'display' | 'accelerator';

export interface PciFunction {
  readonly address: PciAddress;
  readonly vendorId: string; // 4 lower-case hex digits
  readonly deviceId: string;
  readonly subsystemVendorId: string | undefined;
  readonly subsystemDeviceId: string | undefined;
  readonly classCode: number; // 24-bit, e.g. 0x030000
  readonly driver: string | undefined; // name of the bound driver (`driver` link basename)
  readonly driverOverride: string | undefined; // undefined when "(null)" or empty
  readonly iommuGroup: number | undefined;
  readonly numaNode: number | undefined; // undefined when sysfs says -1
  readonly bootVga: boolean | undefined; // undefined: no boot_vga file (not VGA class)
  /** `boot_display` (newer kernels, any display class): true when the file exists and reads 1. */
  readonly bootDisplay?: boolean | undefined;
  readonly resetMethods: readonly string[];
  readonly sriovTotalVfs: number | undefined;
  readonly sriovNumVfs: number | undefined;
  readonly physfn: PciAddress | undefined; // set on SR-IOV virtual functions
  readonly isBridge: boolean; // PCI-PCI / host bridges: vfio-pci refuses them, viability ignores them
  readonly bars: readonly Bar[];
  readonly vfioDevices: readonly string[]; // `vfio-dev/vfioN` entries (iommufd cdevs)
}

export interface IommuGroup {
  readonly id: number;
  readonly members: readonly PciAddress[]; // sorted
}

/** Platform framebuffer device registered by sysfb (efifb/vesafb/simplefb/simpledrm drive it). */
export interface Framebuffer {
  readonly device: string; // platform device name, e.g. `efi-framebuffer.0`
  readonly type: 'efi-framebuffer' | 'simple-framebuffer' | 'vesa-framebuffer' | 'vga-framebuffer' | 'platform-framebuffer' | 'other';
  readonly driver: string | undefined; // platform driver dir name bound to it, e.g. `efi-framebuffer`
  readonly claim: string | undefined; // the /proc/iomem claim name: efifb, simpledrm, vesafb, BOOTFB, ...
  readonly range: { readonly start: bigint; readonly end: bigint } | undefined;
  /** The GPU BAR the framebuffer memory lies in, when it lies in one. */
  readonly owner: { readonly address: PciAddress; readonly bar: number } | undefined;
  /** The PCI device sysfb parented the platform device to (its sysfs directory nests under it), if any. */
  readonly parent?: PciAddress | undefined;
}

export interface VtConsole {
  readonly name: string; // vtcon0, vtcon1, ...
  readonly description: string; // e.g. "(M) frame buffer device"
  readonly bound: boolean;
  readonly kind: 'fbcon' | 'vgacon' | 'dummy' | 'other';
}

export interface KernelInfo {
  readonly release: string | undefined; // /proc/sys/kernel/osrelease
  readonly major: number | undefined;
  readonly minor: number | undefined;
}

/** A GPU to hand off: a physical function, or an SR-IOV virtual function (then `fn.physfn` names its PF). */
export interface Gpu {
  readonly fn: PciFunction;
  readonly kind: GpuKind;
  /** Other endpoints of the same physical card (audio, USB, UCSI), found by slot and device links. */
  readonly companions: readonly PciAddress[];
  readonly isBootGpu: boolean; // boot_vga=1 (or boot_display) or owner of the firmware framebuffer
  readonly framebuffers: readonly string[]; // platform framebuffer devices lying in this GPU's BARs
}

/**
 * Something other than the device's own VFIO driver holding memory inside one of its BARs: a
 * `/proc/iomem` entry nested in the BAR (`BOOTFB`, `simpledrm`, `efifb`, a native driver's claim).
 * While one exists the VMM's `pci_request_selected_regions()` on that BAR fails (`BAR n: can't
 * reserve`, kernel.md §3.3, kernel-e2e.md "Non-VGA boot display").
 */
export interface BarClaim {
  readonly address: PciAddress;
  readonly bar: number;
  readonly name: string;
  readonly start: bigint;
  readonly end: bigint;
  /** True for sysfb and firmware framebuffer claims (BOOTFB, efifb, simpledrm, vesafb, ...). */
  readonly firmwareFramebuffer: boolean;
}

/** What the host's platform is, as far as the advice we give depends on it. */
export type IommuPlatform = 'intel' | 'amd' | 'arm-smmu' | 'unknown';

export interface HostSnapshot {
  readonly kernel: KernelInfo;
  readonly iommuEnabled: boolean;
  readonly vfioPci: { readonly loaded: boolean; readonly loadable: boolean };
  readonly iommufd: boolean; // /dev/iommu present
  /** `vfio_iommu_type1`: loaded (`/sys/module/vfio_iommu_type1`) / loadable (modules.dep or modules.builtin). */
  readonly vfioIommuType1: { readonly loaded: boolean; readonly loadable: boolean };
  readonly vfioGroupNodes: readonly number[]; // /dev/vfio/<N> present, sorted numerically
  readonly functions: readonly PciFunction[]; // every PCI function, sorted by address
  readonly groups: readonly IommuGroup[]; // sorted numerically
  readonly gpus: readonly Gpu[]; // sorted by address
  readonly framebuffers: readonly Framebuffer[];
  readonly vtconsoles: readonly VtConsole[];
  /**
   * Claims inside GPU BARs from `/proc/iomem` (see BarClaim). Absent in hand-built snapshots; empty
   * when iomem shows no claims or could not be read with addresses (see `iomemReadable`).
   */
  readonly barClaims?: readonly BarClaim[];
  /** False when `/proc/iomem` printed zeroed ranges (no CAP_SYS_ADMIN): BAR claims are then inferred from sysfs. */
  readonly iomemReadable?: boolean;
  /** CPU architecture family from the kernel release / IOMMU drivers present; drives advice wording only. */
  readonly platform?: IommuPlatform;
  /** PCI devices whose sysfs directory could not be read (e.g. a symlink loop): left out, not fatal. */
  readonly unreadable?: readonly { readonly address: PciAddress; readonly error: string }[];
}

/**
 * Whether a VMM can attach a VFIO group to an IOMMU now: the type1 backend is loaded, or iommufd is
 * (`/dev/iommu`; QEMU then uses the iommufd cdev path). Without either, `VFIO_SET_IOMMU` fails.
 */
export function vfioIommuBackendAvailable(s: Pick<HostSnapshot, 'iommufd' | 'vfioIommuType1'>): boolean {
  return s.vfioIommuType1.loaded || s.iommufd;
}
