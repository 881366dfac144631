/**
 * Declarative host profile: a YAML description of a GPU host that can be materialised both into the
 * simulated kernel (src/sysfs/simulated-kernel.ts) and into a real directory tree with the kernel's
 * layout (src/profiles/materialise.ts). The YAML uses the same field names as these types; numbers
 * that are hex in sysfs (ids, classes, addresses) are written as strings ("0x030000", "10de").
 */
export interface HostProfile {
  readonly name: string;
  readonly description?: string;
  /** `/proc/sys/kernel/osrelease`, e.g. `6.1.0-56-amd64`; drives kernel-version-specific simulator behaviour. */
  readonly kernelRelease: string;
  /** false: no `iommu_group` links and an empty `/sys/kernel/iommu_groups`. Default true. */
  readonly iommu?: boolean;
  /** CPU family for `/proc/cpuinfo` (`vendor_id` GenuineIntel/AuthenticAMD, or arm64 `CPU implementer`); omitted: no cpuinfo. */
  readonly cpu?: 'intel' | 'amd' | 'arm64';
  /** IOMMU hardware units in `/sys/class/iommu` (`dmar0`, `ivhd0`, `smmu3.0x0000000011000000`); shown only with the IOMMU on. */
  readonly iommuDevices?: readonly string[];
  /** Drivers registered in `/sys/bus/pci/drivers` at start (module loaded or built in). */
  readonly loadedDrivers: readonly string[];
  /** Modules present under `/lib/modules/<release>` that `loadModule` can load (e.g. `vfio-pci`). */
  readonly availableModules?: readonly string[];
  /** `/dev/iommu` present (iommufd); vfio-bound devices then also get `vfio-dev/vfioN`. Default false. */
  readonly iommufd?: boolean;
  /**
   * Modules that register no PCI driver but are loaded at start (`/sys/module/<name>`), e.g. `vfio_iommu_type1`.
   * Default: `vfio_iommu_type1` when `vfio-pci` is in loadedDrivers (vfio's `softdep post:` pulled it in on a
   * host that loaded vfio-pci through modprobe); give `[]` for a host that has vfio-pci without it.
   */
  readonly loadedModules?: readonly string[];
  readonly devices: readonly ProfileDevice[];
  readonly framebuffers?: readonly ProfileFramebuffer[];
  /** Default: vtcon0 `(S) dummy device` unbound + vtcon1 `(M) frame buffer device` bound when a framebuffer driver is bound. */
  readonly vtconsoles?: readonly ProfileVtConsole[];
}

export interface ProfileDevice {
  readonly address: string; // dddd:bb:dd.f
  readonly class: string; // "0x030000"
  readonly vendor: string; // "10de"
  readonly device: string; // "2684"
  readonly subsystemVendor?: string;
  readonly subsystemDevice?: string;
  readonly revision?: string; // "0xa1"
  /** Driver bound at start; omitted = no driver. Must be in loadedDrivers. */
  readonly driver?: string;
  /** Driver that a plain `drivers_probe` binds (if loaded); defaults to `driver`. */
  readonly nativeDriver?: string;
  readonly driverOverride?: string;
  /** IOMMU group number (ignored when iommu is false). */
  readonly iommuGroup?: number;
  /** NUMA node; -1 = unknown (the default). */
  readonly numaNode?: number;
  /** Only meaningful for VGA class (0x0300xx): the kernel shows `boot_vga` only there. */
  readonly bootVga?: boolean;
  /** Newer kernels: `boot_display` file on the boot display device of any display class. */
  readonly bootDisplay?: boolean;
  readonly resetMethods?: readonly string[];
  readonly sriov?: { readonly totalVfs: number; readonly numVfs: number };
  readonly physfn?: string; // address of the PF for a VF
  /** Parent bridge address; the device's sysfs directory nests under it. Omitted = root bus. */
  readonly parent?: string;
  readonly bars?: readonly ProfileBar[];
  /** Consumer device links (e.g. the GPU's HDMI audio function), as `consumer:pci:<addr>`. */
  readonly consumers?: readonly string[];
}

export interface ProfileBar {
  readonly index: number; // 0..5, 6 = ROM
  readonly start: string; // "0xc0000000"
  readonly size: string; // "0x1000000" or "16M"/"256K"/"32G"
  readonly prefetchable?: boolean;
  readonly is64?: boolean;
}

export interface ProfileFramebuffer {
  readonly device: string; // platform device, e.g. `efi-framebuffer.0`, `simple-framebuffer.0`
  /** Platform driver bound at start (dir under /sys/bus/platform/drivers): `efi-framebuffer`, `simple-framebuffer`, `vesa-framebuffer`. */
  readonly driver?: string;
  /** Name of the /proc/iomem claim: `efifb`, `simpledrm`, `vesafb`, `simplefb`, `BOOTFB`. */
  readonly claim?: string;
  /**
   * sysfb's own resource around the claim, e.g. `BOOTFB` (drivers/firmware/sysfb_simplefb.c); shown in
   * /proc/iomem as the parent of `claim`. The simulator shows it while a driver is bound — an assumption:
   * the platform device keeps its resource until it is unregistered (not verified on a real kernel).
   */
  readonly resource?: string;
  readonly start: string;
  readonly size: string;
  /** PCI device the platform device is parented to (sysfb_parent_dev); omitted = unparented. */
  readonly parent?: string;
}

export interface ProfileVtConsole {
  readonly name: string; // vtcon0
  readonly description: string; // "(M) frame buffer device"
  readonly bound: boolean;
}
