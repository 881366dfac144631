import { InvalidArgumentError } from '../core/errors.js';
import { extendedResourceNameProblem, isExtendedResourceName } from '../core/resource-name.js';
import { parsePciAddress, parseVendorDevice } from '../core/pci-address.js';
import { parsePciClassSelector, pciClassMatches, type PciClassSelector } from '../core/pci-class.js';
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

export { extendedResourceNameProblem, isExtendedResourceName, pciResourceEnvVar } from '../core/resource-name.js';

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
  | { readonly kind: 'class'; readonly selector: PciClassSelector; readonly resourceName: string };

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
      let selector: PciClassSelector;
      try {
        selector = parsePciClassSelector(o.class!);
      } catch (err) {
        throw new InvalidArgumentError(`${where}: ${(err as Error).message}`, { cause: err });
      }
      matchers.push({ kind: 'class', selector, resourceName: o.resourceName });
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
          return pciClassMatches(m.selector, fn.classCode);
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

/**
 * Longest socket path the kernel accepts: `sun_path` is 108 bytes including the terminating NUL
 * (unix(7)). Node does not refuse a longer path — libuv silently truncates it, so our own probe still
 * connects to the truncated file while kubelet's dial of the full path fails for ever.
 */
export const MAX_SOCKET_PATH_BYTES = 107;
const SOCKET_PREFIX = 'vfio-handoff-';

/**
 * Socket file name for a resource inside `pluginDir`: `vfio-handoff-<name>.sock` when the whole path fits
 * in `MAX_SOCKET_PATH_BYTES`, else `vfio-handoff-<as many characters as fit>-<8 hex digits of FNV-1a over
 * the full name>.sock` (unique per name, still findable in a listing). So every valid resource name (up
 * to 317 characters) gets a socket kubelet can dial, in any plugin directory up to 80 bytes long
 * (microk8s: 56). The name depends on the directory, so callers pass the one they serve in.
 */
export function socketFileName(resourceName: string, pluginDir = '/var/lib/kubelet/device-plugins'): string {
  const budget = MAX_SOCKET_PATH_BYTES - Buffer.byteLength(pluginDir.replace(/\/+$/, '')) - 1;
  const safe = resourceName.replace(/[^A-Za-z0-9._-]/g, '_');
  const whole = `${SOCKET_PREFIX}${safe}.sock`;
  if (whole.length <= budget) return whole;
  let h = 0x811c9dc5;
  for (const ch of resourceName) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  const hash = h.toString(16).padStart(8, '0');
  const keep = Math.max(0, budget - SOCKET_PREFIX.length - 1 - hash.length - '.sock'.length);
  return keep === 0 ? `${SOCKET_PREFIX}${hash}.sock` : `${SOCKET_PREFIX}${safe.slice(0, keep)}-${hash}.sock`;
}

/** Throws `InvalidArgumentError` when `path` cannot be a unix socket address (see `MAX_SOCKET_PATH_BYTES`). */
export function assertSocketPathFits(path: string): void {
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new InvalidArgumentError(
      `unix socket path ${JSON.stringify(path)} is ${bytes} bytes; the kernel allows ${MAX_SOCKET_PATH_BYTES} (use a shorter kubelet directory)`,
    );
  }
}
