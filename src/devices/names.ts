import { InvalidArgumentError } from '../core/errors.js';
import { isPciAddress, parsePciAddress, type PciAddress } from '../core/pci-address.js';

/**
 * Names of a GPU outside the host: the device name both front ends publish (the DRA ResourceSlice device
 * and the CDI device) and the fully-qualified CDI device ID a container runtime resolves. The names are
 * fixed by /work/wt/DRA.md (the contract between the device-plugin, DRA and CDI code).
 */

/** CDI kind (`vendor/class`) of every device we describe. */
export const CDI_VENDOR = 'handoff.dev';
export const CDI_CLASS = 'gpu';
export const CDI_KIND = `${CDI_VENDOR}/${CDI_CLASS}`;

/**
 * The device name of the GPU at `address`: `0000:65:00.0` → `gpu-0000-65-00-0`. A DNS-1123 label (lower
 * case, digits and `-`, 16 characters), as a ResourceSlice device name must be (k8s `resource.k8s.io/v1`
 * Device.Name: DNS label), and a valid CDI device name (CDI SPEC.md: alphanumerics, `-`, `_`, `.`, starts
 * and ends alphanumeric). One address gives one name and back (see `addressFromDeviceName`).
 * Throws `InvalidArgumentError` for anything that is not a canonical PCI address.
 */
export function deviceName(address: PciAddress | string): string {
  if (!isPciAddress(address)) throw new InvalidArgumentError(`not a canonical PCI address: ${JSON.stringify(address)}`);
  return `gpu-${address.replace(/[:.]/g, '-')}`;
}

const NAME = /^gpu-([0-9a-f]{4})-([0-9a-f]{2})-([0-1][0-9a-f])-([0-7])$/;

/** The inverse of `deviceName`; `undefined` for any other string (a name we never published). */
export function addressFromDeviceName(name: string): PciAddress | undefined {
  const m = NAME.exec(name);
  return m ? parsePciAddress(`${m[1]}:${m[2]}:${m[3]}.${m[4]}`) : undefined;
}

/** The fully-qualified CDI device ID: `handoff.dev/gpu=gpu-0000-65-00-0` (CDI SPEC.md "kind=name"). */
export function cdiDeviceId(address: PciAddress | string): string {
  return `${CDI_KIND}=${deviceName(address)}`;
}
