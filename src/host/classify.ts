import type { GpuKind } from './model.js';

/**
 * PCI class rules for discovery. The class code is the 24-bit value of the sysfs `class` file
 * (base class, sub-class, prog-if), e.g. 0x030200 for a 3D controller.
 */

/** Vendors whose 0x1200 "processing accelerator" functions are GPUs (AMD Instinct MI300X, ...). */
export const GPU_ACCELERATOR_VENDORS: ReadonlySet<string> = new Set(['1002', '10de', '8086']);

/** Base class + sub-class (the upper 16 bits), the part lspci prints as `[0302]`. */
export function classOf(classCode: number): number {
  return (classCode >>> 8) & 0xffff;
}

/**
 * The GPU kind of a function, or `undefined` when it is not a GPU. Display classes count for any
 * vendor (the ASPEED BMC VGA is a GPU — the verdict treats it as the boot GPU); 0x1200 only for GPU
 * vendors, so that NICs' and FPGAs' accelerator functions are left alone. NVSwitches are 0x0680
 * (bridge, other) and therefore never GPUs.
 */
export function gpuKindOf(classCode: number, vendorId: string): GpuKind | undefined {
  switch (classOf(classCode)) {
    case 0x0300:
      return 'vga';
    case 0x0302:
      return '3d';
    case 0x0380:
      return 'display';
    case 0x1200:
      return GPU_ACCELERATOR_VENDORS.has(vendorId) ? 'accelerator' : undefined;
    default:
      return undefined;
  }
}

/** VGA class is what vfio-pci's `vfio_pci_is_vga()` tests (class >> 8 == 0x0300): only those get aperture removal. */
export function isVgaClass(classCode: number): boolean {
  return classOf(classCode) === 0x0300;
}

/**
 * Bridges as the viability rules see them: host bridges (0x0600), PCI-PCI bridges (0x0604),
 * CardBus bridges (0x0607) and semi-transparent PCI-PCI bridges (0x0609). The PCI-PCI and CardBus
 * kinds have a non-normal header, so vfio-pci refuses them, and pcieport is DMA-ownership exempt;
 * host bridges normally run without a driver. "Other bridge" (0x0680, e.g. NVSwitch) is an ordinary
 * endpoint and is deliberately not a bridge here.
 */
export function isBridgeClass(classCode: number): boolean {
  const c = classOf(classCode);
  return c === 0x0600 || c === 0x0604 || c === 0x0607 || c === 0x0609;
}
