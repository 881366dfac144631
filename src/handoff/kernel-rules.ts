import type { KernelInfo } from '../host/model.js';

/**
 * What vfio-pci does to firmware framebuffers when it binds a VGA-class device, by kernel version
 * (kernel.md §3.2–3.3, confirmed on real kernels in kernel-e2e.md):
 * - `none`: before 6.0 vfio-pci removes nothing; the framebuffer driver must be released by us.
 * - `any-vga`: 6.0–6.4 (and Debian's 6.1.192, where the 6.5 fix is not in effect) call sysfb_disable()
 *   for every VGA-class bind, so preparing a *secondary* VGA GPU also removes the boot framebuffer.
 * - `boot-only`: 6.5+ remove sysfb only for the default VGA device; overlapping apertures always go.
 */
export type SysfbRemoval = 'none' | 'any-vga' | 'boot-only';

export function sysfbRemoval(kernel: KernelInfo): SysfbRemoval {
  const { major, minor } = kernel;
  if (major === undefined || minor === undefined) return 'boot-only';
  if (major < 6) return 'none';
  if (major === 6 && minor < 5) return 'any-vga';
  return 'boot-only';
}

/** True when vfio-pci's bind removes a framebuffer platform device for good (it is unregistered, not unbound). */
export function vfioRemovesFramebuffers(kernel: KernelInfo): boolean {
  return sysfbRemoval(kernel) !== 'none';
}
