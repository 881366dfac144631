import type { PciAddress } from '../core/pci-address.js';

/**
 * The vocabulary of host changes. Each step is one sysfs write (or a read-only verification) with a
 * postcondition the executor checks by reading back. Steps are plain data so plans can be printed,
 * journaled and compared in tests.
 */
export type Step =
  | { readonly kind: 'load-module'; readonly module: string }
  | { readonly kind: 'unbind-vtconsole'; readonly vtconsole: string }
  | { readonly kind: 'bind-vtconsole'; readonly vtconsole: string }
  | { readonly kind: 'unbind-framebuffer'; readonly device: string; readonly driver: string }
  | { readonly kind: 'bind-framebuffer'; readonly device: string; readonly driver: string }
  | { readonly kind: 'set-override'; readonly address: PciAddress; readonly driver: string }
  | { readonly kind: 'clear-override'; readonly address: PciAddress }
  | { readonly kind: 'unbind-driver'; readonly address: PciAddress; readonly driver: string }
  /** drivers_probe; `expect` is the driver that must hold the device afterwards (undefined: any or none but vfio-pci). */
  | { readonly kind: 'probe'; readonly address: PciAddress; readonly expect: string | undefined }
  /** `nodeGone: false` (host only): another tool's function stays on vfio-pci, so /dev/vfio/<group> stays too. */
  | { readonly kind: 'verify-group'; readonly group: number; readonly expect: 'vfio' | 'host'; readonly members: readonly PciAddress[]; readonly nodeGone?: false };

export type StepKind = Step['kind'];

export function stepTarget(step: Step): string {
  switch (step.kind) {
    case 'load-module':
      return step.module;
    case 'unbind-vtconsole':
    case 'bind-vtconsole':
      return step.vtconsole;
    case 'unbind-framebuffer':
    case 'bind-framebuffer':
      return step.device;
    case 'verify-group':
      return `group ${step.group}`;
    default:
      return step.address;
  }
}

export function describeStep(step: Step): string {
  switch (step.kind) {
    case 'load-module':
      return `load kernel module ${step.module}`;
    case 'unbind-vtconsole':
      return `detach the framebuffer console from ${step.vtconsole}`;
    case 'bind-vtconsole':
      return `reattach the framebuffer console to ${step.vtconsole}`;
    case 'unbind-framebuffer':
      return `release firmware framebuffer ${step.device} from driver ${step.driver}`;
    case 'bind-framebuffer':
      return `rebind firmware framebuffer ${step.device} to driver ${step.driver}`;
    case 'set-override':
      return `set driver_override of ${step.address} to ${step.driver}`;
    case 'clear-override':
      return `clear driver_override of ${step.address}`;
    case 'unbind-driver':
      return `unbind ${step.address} from ${step.driver}`;
    case 'probe':
      return step.expect ? `probe ${step.address} (expect ${step.expect})` : `probe ${step.address} (host driver)`;
    case 'verify-group':
      return step.expect === 'vfio'
        ? `verify group ${step.group} is viable on vfio-pci and /dev/vfio/${step.group} exists`
        : `verify group ${step.group} is back on the host (no vfio-pci, no /dev/vfio/${step.group})`;
  }
}
