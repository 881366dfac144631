import type { PciFunction } from './model.js';

/**
 * Vendor and driver knowledge in one place: which functions belong to a GPU's card, which PCI
 * drivers are VFIO drivers, and which devices are known to lack a usable reset. Everything else in
 * src/host and src/handoff asks these functions instead of repeating vendor ids.
 */

/** The plain vfio-pci driver (its `/sys/bus/pci/drivers` directory name; the module is `vfio_pci`). */
export const VFIO_PCI_DRIVER = 'vfio-pci';

/**
 * Vendor-specific VFIO variant drivers that register as their module name, e.g. `nvgrace_gpu_vfio_pci`
 * (Grace Hopper/Blackwell), `mlx5_vfio_pci`, `hisi_acc_vfio_pci`, `pds_vfio_pci`, `virtio_vfio_pci`,
 * `qat_vfio_pci`, `xe_vfio_pci`. Like vfio-pci they set `driver_managed_dma` and expose the device
 * to a VMM through `/dev/vfio/<group>` (kernel.md §2, §5: "variant drivers have their own names ...
 * chosen from modules.alias entries `alias vfio_pci:...`").
 */
const VFIO_VARIANT = /^[a-z0-9_]+_vfio_pci$/;

/** True for vfio-pci and every vfio-pci variant driver. */
export function isVfioDriver(driver: string | undefined): boolean {
  return driver !== undefined && (driver === VFIO_PCI_DRIVER || VFIO_VARIANT.test(driver));
}

/**
 * Drivers that leave an IOMMU group viable for VFIO: they never use the kernel DMA API on the device
 * (`driver_managed_dma`: vfio-pci and its variants, pci-stub; pcieport only matters for bridges,
 * which viability ignores). kernel.md §2.
 */
export function isUserDmaDriver(driver: string | undefined): boolean {
  return isVfioDriver(driver) || driver === 'pci-stub';
}

/**
 * The variant driver `modules.alias` offers for a device, if any: lines
 * `alias vfio_pci:v000010DEd00002342sv*sd*bc*sc*i* nvgrace_gpu_vfio_pci` (the `vfio_pci:` alias
 * prefix is what vfio variant modules publish; kernel.md §5). Only vendor and device are matched;
 * `*` wildcards are honoured. Returns the driver name (module names of vfio variants equal their
 * driver names).
 */
export function variantDriverFromAliases(modulesAlias: string, vendorId: string, deviceId: string): string | undefined {
  const want = `v0000${vendorId.toUpperCase()}d0000${deviceId.toUpperCase()}`;
  for (const line of modulesAlias.split('\n')) {
    const m = /^alias\s+vfio_pci:(v[0-9A-F*]{8}d[0-9A-F*]{8})\S*\s+(\S+)\s*$/.exec(line.trim());
    if (!m) continue;
    const pattern = m[1]!;
    let ok = true;
    for (let i = 0; i < pattern.length && ok; i++) ok = pattern[i] === '*' ? true : pattern[i] === want[i];
    if (ok && VFIO_VARIANT.test(m[2]!)) return m[2]!;
  }
  return undefined;
}

/** `dddd:bb:dd` — the slot (physical device) part of an address. */
export function slotOf(address: string): string {
  return address.slice(0, address.lastIndexOf('.'));
}

/**
 * Whether `fn` is a function of the same card as `gpu` by the slot rule: same slot **and** the GPU's
 * vendor. An APU's slot also holds the platform's own functions under the CPU vendor's id (AMD:
 * GPU 1002:1638 next to the security processor 1022:15df, USB 1022:1639 and audio 1022:15e3 —
 * hosts.md §3, ryanprescott/realtek-verb-tools #8); they are the host's, not the card's. Discrete
 * cards' extra functions (NVIDIA HDMI audio, Turing USB/UCSI, AMD HDMI audio 1002:ab28) carry the
 * GPU's vendor id.
 *
 * One exception: QEMU's emulated functions (subsystem vendor 1af4 on every one of them) that a VM
 * definition composes into one multifunction slot, e.g. std VGA 1234:1111 + ICH9 HDA 8086:293e at
 * 00:02.0/.1 — the "GPU with HDMI audio" of the kernel e2e test bed (kernel-e2e.md). There is no
 * physical card whose vendor could be compared; the VM author built the slot as one device. Laptop
 * OEM subsystem ids are shared by all functions of an APU too, so only the QEMU id is trusted.
 */
const QEMU_SUBSYSTEM_VENDOR = '1af4';

type CardIdentity = Pick<PciFunction, 'address' | 'vendorId' | 'subsystemVendorId'>;

export function isCardFunction(gpu: CardIdentity, fn: CardIdentity): boolean {
  if (fn.address === gpu.address || slotOf(fn.address) !== slotOf(gpu.address)) return false;
  if (fn.vendorId === gpu.vendorId) return true;
  return gpu.subsystemVendorId === QEMU_SUBSYSTEM_VENDOR && fn.subsystemVendorId === QEMU_SUBSYSTEM_VENDOR;
}

/**
 * Devices whose reset is known not to work even when `reset_method` lists one (drivers/pci/quirks.c
 * `quirk_nvidia_no_bus_reset`: 0x2340–0x237f and T4 0x1eb8 have bus reset disabled; kernel.md §4).
 * Only used to word warnings; the kernel already hides the method.
 */
export function knownResetQuirk(fn: Pick<PciFunction, 'vendorId' | 'deviceId'>): string | undefined {
  if (fn.vendorId !== '10de') return undefined;
  const id = parseInt(fn.deviceId, 16);
  if ((id & 0xffc0) === 0x2340 || id === 0x1eb8) return 'the kernel disables bus reset for this NVIDIA device (quirk_nvidia_no_bus_reset)';
  return undefined;
}
