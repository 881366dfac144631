import { InvalidArgumentError } from '../core/errors.js';
import type { PciAddress } from '../core/pci-address.js';
import { isPciAddress } from '../core/pci-address.js';

/**
 * Pure builders for every host path vfio-handoff reads or writes, relative to the host root (no
 * leading `/`). Each variable component is checked here so that nothing a user typed — or a
 * hostile sysfs entry name — can turn a write to `driver_override` into a write somewhere else.
 */

// Whitespace and control characters never occur in driver, module, platform-device or console
// names; refusing them keeps a value like "vfio-pci\n../x" from becoming a path.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\s\u0000-\u001f\u007f/]/;

/** Throws `InvalidArgumentError` unless `value` is a single, harmless path component. */
export function safeComponent(value: string, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new InvalidArgumentError(`${what} must not be empty`);
  if (value === '.' || value === '..') throw new InvalidArgumentError(`${what} must not be ${JSON.stringify(value)}`);
  if (UNSAFE.test(value)) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(value)} contains a path separator, whitespace or control character`);
  }
  if (value.length > 255) throw new InvalidArgumentError(`${what} is longer than 255 characters`);
  return value;
}

/**
 * Throws `InvalidArgumentError` for a host path that is absolute, contains `..`/`.`/empty
 * components or a NUL. The host port adapters call this on every path as defence in depth.
 */
export function assertSafeRelativePath(path: string): string {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('host path must not be empty');
  if (path.includes('\0')) throw new InvalidArgumentError(`host path ${JSON.stringify(path)} contains NUL`);
  if (path.startsWith('/')) throw new InvalidArgumentError(`host path ${JSON.stringify(path)} must be relative to the host root`);
  for (const part of path.split('/')) {
    if (part === '' || part === '.' || part === '..') {
      throw new InvalidArgumentError(`host path ${JSON.stringify(path)} has an empty, "." or ".." component`);
    }
  }
  return path;
}

function pci(addr: PciAddress): string {
  // The brand says "validated", but a cast can lie; re-checking costs nothing.
  if (!isPciAddress(addr)) throw new InvalidArgumentError(`not a canonical PCI address: ${JSON.stringify(addr)}`);
  return addr;
}

function group(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`IOMMU group must be a non-negative integer, got ${String(n)}`);
  return String(n);
}

export const PCI_DEVICE_ATTRIBUTES = [
  'driver',
  'driver_override',
  'iommu_group',
  'class',
  'vendor',
  'device',
  'subsystem_vendor',
  'subsystem_device',
  'revision',
  'numa_node',
  'boot_vga',
  'boot_display',
  'reset_method',
  'sriov_numvfs',
  'sriov_totalvfs',
  'physfn',
  'resource',
  'vfio-dev',
  'enable',
] as const;
export type PciDeviceAttribute = (typeof PCI_DEVICE_ATTRIBUTES)[number];

export const PCI_DEVICES = 'sys/bus/pci/devices';
export const PCI_DRIVERS = 'sys/bus/pci/drivers';
export const PCI_DRIVERS_PROBE = 'sys/bus/pci/drivers_probe';
export const IOMMU_GROUPS = 'sys/kernel/iommu_groups';
/** CPU identification: `vendor_id` on x86, `CPU implementer` on arm64. */
export const PROC_CPUINFO = 'proc/cpuinfo';
/** IOMMU hardware units (`dmar0`, `ivhd0`, `smmu3.0x...`); empty when the IOMMU is off. */
export const IOMMU_CLASS = 'sys/class/iommu';
export const PLATFORM_DEVICES = 'sys/bus/platform/devices';
export const PLATFORM_DRIVERS = 'sys/bus/platform/drivers';
export const VTCONSOLES = 'sys/class/vtconsole';
export const DEV_VFIO = 'dev/vfio';
export const VFIO_CONTAINER = 'dev/vfio/vfio';
export const VFIO_DEVICES = 'dev/vfio/devices';
export const DEV_IOMMU = 'dev/iommu';
/**
 * The VFIO IOMMU backend of the legacy container API (`VFIO_SET_IOMMU` with TYPE1v2). vfio.ko names it only
 * as a `softdep post:`, so a host that loads vfio without modprobe's softdep handling (or a guest without
 * udev) can have vfio-pci without it, and every VMM then fails at `VFIO_SET_IOMMU` (research/kernel-e2e.md).
 */
export const VFIO_IOMMU_TYPE1 = 'vfio_iommu_type1';

/** `/sys/module/<name>`: present while a module is loaded (and for built-ins that have parameters). */
export function sysModule(name: string): string {
  return `sys/module/${safeComponent(normaliseModuleName(name), 'module name')}`;
}
export const PROC_IOMEM = 'proc/iomem';
export const OSRELEASE = 'proc/sys/kernel/osrelease';
/** Where pci.ids lives on Debian/Ubuntu and on Fedora/RHEL, in lookup order. */
export const PCI_IDS_PATHS = ['usr/share/misc/pci.ids', 'usr/share/hwdata/pci.ids'] as const;

/** `sys/bus/pci/devices/<bdf>` (a link into `sys/devices/pci…`). */
export function pciDevice(addr: PciAddress): string {
  return `${PCI_DEVICES}/${pci(addr)}`;
}

export function pciAttribute(addr: PciAddress, attr: PciDeviceAttribute): string {
  if (!(PCI_DEVICE_ATTRIBUTES as readonly string[]).includes(attr)) throw new InvalidArgumentError(`unknown PCI attribute ${JSON.stringify(attr)}`);
  return `${pciDevice(addr)}/${attr}`;
}

/** `sys/bus/pci/devices/<bdf>/<name>` for names not in the fixed list (e.g. `consumer:pci:…`, `virtfn0`). */
export function pciDeviceEntry(addr: PciAddress, name: string): string {
  return `${pciDevice(addr)}/${safeComponent(name, 'device entry')}`;
}

export function pciDriver(driver: string): string {
  return `${PCI_DRIVERS}/${safeComponent(driver, 'driver name')}`;
}

export type PciDriverFile = 'bind' | 'unbind' | 'new_id' | 'remove_id';
export function pciDriverFile(driver: string, file: PciDriverFile): string {
  if (!['bind', 'unbind', 'new_id', 'remove_id'].includes(file)) throw new InvalidArgumentError(`unknown driver file ${JSON.stringify(file)}`);
  return `${pciDriver(driver)}/${file}`;
}

export function iommuGroup(n: number): string {
  return `${IOMMU_GROUPS}/${group(n)}`;
}

export function iommuGroupDevices(n: number): string {
  return `${iommuGroup(n)}/devices`;
}

export function platformDevice(name: string): string {
  return `${PLATFORM_DEVICES}/${safeComponent(name, 'platform device')}`;
}

export function platformDriver(driver: string): string {
  return `${PLATFORM_DRIVERS}/${safeComponent(driver, 'platform driver')}`;
}

export function platformDriverFile(driver: string, file: 'bind' | 'unbind'): string {
  if (file !== 'bind' && file !== 'unbind') throw new InvalidArgumentError(`unknown driver file ${JSON.stringify(file)}`);
  return `${platformDriver(driver)}/${file}`;
}

export function vtconsole(name: string): string {
  return `${VTCONSOLES}/${safeComponent(name, 'vtconsole')}`;
}

export function vtconsoleFile(name: string, file: 'bind' | 'name'): string {
  if (file !== 'bind' && file !== 'name') throw new InvalidArgumentError(`unknown vtconsole file ${JSON.stringify(file)}`);
  return `${vtconsole(name)}/${file}`;
}

/** `/dev/vfio/<group>`: exists while the group is usable by a VMM. */
export function vfioGroupNode(n: number): string {
  return `${DEV_VFIO}/${group(n)}`;
}

/** `/dev/vfio/devices/vfioN` (iommufd per-device cdev), named by the device's `vfio-dev/vfioN` entry. */
export function vfioDeviceNode(name: string): string {
  const v = safeComponent(name, 'vfio device');
  if (!/^vfio[0-9]+$/.test(v)) throw new InvalidArgumentError(`not a vfio device name: ${JSON.stringify(name)}`);
  return `${VFIO_DEVICES}/${v}`;
}

/** The module index `modprobe` reads; a module listed there is loadable (see `isModuleListed`). */
export function modulesDep(release: string): string {
  return `lib/modules/${safeComponent(release, 'kernel release')}/modules.dep`;
}

/** `modules.builtin`: drivers compiled into the kernel (always "loaded"). */
export function modulesBuiltin(release: string): string {
  return `lib/modules/${safeComponent(release, 'kernel release')}/modules.builtin`;
}

/** `modprobe` treats `-` and `_` in module names as the same character. */
export function normaliseModuleName(name: string): string {
  return name.replace(/-/g, '_');
}

/**
 * True when `modules.dep` (or `modules.builtin`) text lists the module, e.g.
 * `kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/vfio.ko` lists `vfio-pci`/`vfio_pci`.
 */
export function isModuleListed(indexText: string, name: string): boolean {
  const want = normaliseModuleName(name);
  for (const line of indexText.split('\n')) {
    const file = line.split(':', 1)[0]?.trim();
    if (!file) continue;
    const base = file.slice(file.lastIndexOf('/') + 1).replace(/\.ko(\.xz|\.zst|\.gz)?$/, '');
    if (normaliseModuleName(base) === want) return true;
  }
  return false;
}
