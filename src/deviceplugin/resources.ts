import { InvalidArgumentError } from '../core/errors.js';
import { parsePciAddress, parseVendorDevice } from '../core/pci-address.js';
import type { PciFunction } from '../host/model.js';

/**
 * Extended-resource names. The default reproduces NVIDIA kubevirt-gpu-device-plugin's naming
 * (`nvidia.com/<pci.ids name>`, protocol.md §3.4) so existing KubeVirt `permittedHostDevices` keep working.
 */

/** Vendors with a well-known resource domain; every other vendor is published under ours. */
export const VENDOR_DOMAINS: Readonly<Record<string, string>> = {
  '10de': 'nvidia.com',
  '1002': 'amd.com',
  '8086': 'intel.com',
};
export const FALLBACK_DOMAIN = 'handoff.dev';

/**
 * NVIDIA's transformation of a pci.ids device name, step for step: trim, upper-case, `/` and `.` → `_`,
 * each run of whitespace → one `_`, then every character outside `[A-Za-z0-9_.]` is dropped.
 * `TU104GL [Tesla T4]` → `TU104GL_TESLA_T4`.
 */
export function nvidiaStyleName(pciIdsName: string): string {
  return pciIdsName
    .trim()
    .toUpperCase()
    .replaceAll('/', '_')
    .replaceAll('.', '_')
    .replace(/\s+/g, '_')
    .replace(/[^a-zA-Z0-9_.]+/g, '');
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/**
 * kubelet's `IsExtendedResourceName` (protocol.md §2.1): not native (needs a `/`, no `kubernetes.io/`), no
 * `requests.` prefix, and `requests.<name>` must be a qualified name: DNS-1123 subdomain prefix (≤253) +
 * `/` + a name part ≤63 chars. Returns the reason it is invalid, or `undefined`.
 */
export function extendedResourceNameProblem(name: string): string | undefined {
  const slash = name.indexOf('/');
  if (slash < 0) return 'needs a domain prefix (vendor-domain/resourcetype)';
  if (name.includes('kubernetes.io/')) return 'the kubernetes.io domain is reserved for native resources';
  if (name.startsWith('requests.')) return 'must not start with "requests."';
  if (name.indexOf('/', slash + 1) >= 0) return 'must contain exactly one "/"';
  const prefix = `requests.${name.slice(0, slash)}`;
  const part = name.slice(slash + 1);
  if (prefix.length > 253 || !prefix.split('.').every((l) => DNS1123_LABEL.test(l))) {
    return 'the domain must be a lower-case DNS-1123 subdomain';
  }
  if (part.length === 0 || part.length > 63) return 'the name after "/" must be 1-63 characters';
  if (!QUALIFIED_NAME_PART.test(part)) return 'the name after "/" must be alphanumeric, "-", "_" or ".", starting and ending alphanumeric';
  return undefined;
}

export function isExtendedResourceName(name: string): boolean {
  return extendedResourceNameProblem(name) === undefined;
}

export interface ResourceOverride {
  /** Exactly one selector: a PCI address, `vendor:device`, or a class prefix (`0x0302`, `0x030200`, `0x03`). */
  readonly address?: string;
  readonly vendorDevice?: string;
  readonly class?: string;
  readonly resourceName: string;
}

export interface ResourceConfig {
  readonly overrides?: readonly ResourceOverride[];
}

type Matcher =
  | { readonly kind: 'address'; readonly address: string; readonly resourceName: string }
  | { readonly kind: 'vendorDevice'; readonly vendorId: string; readonly deviceId: string; readonly resourceName: string }
  | { readonly kind: 'class'; readonly value: number; readonly shift: number; readonly resourceName: string };

/** Validated configuration: selectors parsed once, names checked against kubelet's rules. */
export interface ResourceNamer {
  readonly matchers: readonly Matcher[];
}

/** Parses and validates the resource configuration; throws `InvalidArgumentError` naming the bad entry. */
export function compileResourceConfig(config: ResourceConfig = {}): ResourceNamer {
  const matchers: Matcher[] = [];
  for (const [i, o] of (config.overrides ?? []).entries()) {
    const where = `resource override #${i + 1}`;
    const problem = extendedResourceNameProblem(o.resourceName);
    if (problem) throw new InvalidArgumentError(`${where}: resource name ${JSON.stringify(o.resourceName)} is invalid: ${problem}`);
    const given = [o.address, o.vendorDevice, o.class].filter((s) => s !== undefined);
    if (given.length !== 1) throw new InvalidArgumentError(`${where}: give exactly one of address, vendorDevice, class`);
    if (o.address !== undefined) {
      matchers.push({ kind: 'address', address: parsePciAddress(o.address), resourceName: o.resourceName });
    } else if (o.vendorDevice !== undefined) {
      const vd = parseVendorDevice(o.vendorDevice);
      matchers.push({ kind: 'vendorDevice', ...vd, resourceName: o.resourceName });
    } else {
      const m = /^(?:0x)?((?:[0-9a-fA-F]{2}){1,3})$/.exec(o.class!);
      if (!m) throw new InvalidArgumentError(`${where}: class ${JSON.stringify(o.class)} must be 2, 4 or 6 hex digits (e.g. 0x0302)`);
      const digits = m[1]!;
      matchers.push({ kind: 'class', value: parseInt(digits, 16), shift: 24 - digits.length * 4, resourceName: o.resourceName });
    }
  }
  return { matchers };
}

/** The configured name for a function, most specific selector first (address, then vendor:device, then class). */
export function overrideFor(namer: ResourceNamer, fn: PciFunction): string | undefined {
  const byKind = (kind: Matcher['kind']): string | undefined =>
    namer.matchers.find((m) => {
      if (m.kind !== kind) return false;
      switch (m.kind) {
        case 'address':
          return m.address === fn.address;
        case 'vendorDevice':
          return m.vendorId === fn.vendorId && m.deviceId === fn.deviceId;
        case 'class':
          return fn.classCode >> m.shift === m.value;
      }
    })?.resourceName;
  return byKind('address') ?? byKind('vendorDevice') ?? byKind('class');
}

/**
 * The default name: `<vendor domain>/<NVIDIA-style pci.ids name>`; `handoff.dev/<vendor>-<device>` when no
 * name is known or the transformed name is not a valid resource name (NVIDIA's plugin would fail to register
 * such a name; we prefer a stable fallback).
 */
export function defaultResourceName(fn: Pick<PciFunction, 'vendorId' | 'deviceId'>, pciIdsName: string | undefined): string {
  const fallback = `${FALLBACK_DOMAIN}/${fn.vendorId}-${fn.deviceId}`;
  if (pciIdsName === undefined) return fallback;
  const name = `${VENDOR_DOMAINS[fn.vendorId] ?? FALLBACK_DOMAIN}/${nvidiaStyleName(pciIdsName)}`;
  return isExtendedResourceName(name) ? name : fallback;
}

/** KubeVirt's `ResourceNameToEnvVar("PCI_RESOURCE", name)`: upper-case, `/` and `.` → `_` (`-` is kept). */
export function pciResourceEnvVar(resourceName: string): string {
  return `PCI_RESOURCE_${resourceName.toUpperCase().replaceAll('/', '_').replaceAll('.', '_')}`;
}

/** Socket file name for a resource: filesystem-safe, short enough for a unix socket path (108 bytes). */
export function socketFileName(resourceName: string): string {
  let safe = resourceName.replace(/[^A-Za-z0-9._-]/g, '_');
  if (safe.length > 60) {
    // Keep names unique after truncation with a short stable hash of the full name.
    let h = 0x811c9dc5;
    for (const ch of resourceName) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
    safe = `${safe.slice(0, 51)}-${h.toString(16).padStart(8, '0')}`;
  }
  return `vfio-handoff-${safe}.sock`;
}
