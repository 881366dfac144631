import { InvalidArgumentError } from './errors.js';

declare const pciAddressBrand: unique symbol;
/** A canonical PCI address `dddd:bb:dd.f`, lower-case, 4-digit domain (the form sysfs, vfio and KubeVirt use). */
export type PciAddress = string & { readonly [pciAddressBrand]: true };

// Domain: 4 hex digits (sysfs) — NVML's 8-digit form is accepted when its upper half is zero.
const FULL = /^([0-9a-fA-F]{4}|0000[0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$/;
const SHORT = /^([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$/;

/**
 * Parses a PCI address given by a user or read from sysfs. Accepts `dddd:bb:dd.f`, NVML's
 * `0000dddd:bb:dd.f`, and (only when `allowShort`) lspci's `bb:dd.f` meaning domain 0000.
 * Anything else — path separators, NUL, whitespace, `..` — is rejected before it can reach a path.
 */
export function parsePciAddress(raw: string, opts: { allowShort?: boolean } = {}): PciAddress {
  if (typeof raw !== 'string') throw new InvalidArgumentError(`PCI address must be a string`);
  const full = FULL.exec(raw);
  if (full) {
    const domain = full[1]!.slice(-4).toLowerCase();
    return `${domain}:${full[2]!.toLowerCase()}:${full[3]!.toLowerCase()}.${full[4]}` as PciAddress;
  }
  if (opts.allowShort) {
    const short = SHORT.exec(raw);
    if (short) return `0000:${short[1]!.toLowerCase()}:${short[2]!.toLowerCase()}.${short[3]}` as PciAddress;
  }
  throw new InvalidArgumentError(
    `malformed PCI address ${JSON.stringify(raw)}: expected dddd:bb:dd.f (e.g. 0000:65:00.0)`,
  );
}

export function isPciAddress(raw: string): raw is PciAddress {
  return /^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/.test(raw);
}

export interface PciAddressParts {
  readonly domain: number;
  readonly bus: number;
  readonly device: number;
  readonly fn: number;
}

export function pciAddressParts(addr: PciAddress): PciAddressParts {
  const [domain, bus, rest] = addr.split(':') as [string, string, string];
  const [device, fn] = rest.split('.') as [string, string];
  return { domain: parseInt(domain, 16), bus: parseInt(bus, 16), device: parseInt(device, 16), fn: parseInt(fn, 10) };
}

/** Numeric order (domain, bus, device, function); canonical strings already sort this way. */
export function comparePciAddress(a: PciAddress, b: PciAddress): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `vendor:device` selector, e.g. `10de:2331` (case-insensitive, optional 0x). */
export interface VendorDeviceId {
  readonly vendorId: string; // 4 lower-case hex digits, no 0x
  readonly deviceId: string;
}

export function parseVendorDevice(raw: string): VendorDeviceId {
  const m = /^(?:0x)?([0-9a-fA-F]{4}):(?:0x)?([0-9a-fA-F]{4})$/.exec(raw);
  if (!m) throw new InvalidArgumentError(`malformed vendor:device ${JSON.stringify(raw)}: expected e.g. 10de:2331`);
  return { vendorId: m[1]!.toLowerCase(), deviceId: m[2]!.toLowerCase() };
}

/** Normalises a sysfs hex id (`0x10de\n`) to `10de`. */
export function normaliseHexId(raw: string, digits: number): string {
  const v = raw.trim().toLowerCase().replace(/^0x/, '');
  if (!/^[0-9a-f]+$/.test(v)) throw new InvalidArgumentError(`not a hex id: ${JSON.stringify(raw)}`);
  return v.padStart(digits, '0');
}
