import { HostReadError, HostWriteError, InvalidArgumentError, TimeoutError, type HostErrno } from '../core/errors.js';
import { isPciAddress, parsePciAddress, pciAddressParts, type PciAddress } from '../core/pci-address.js';
import type { HostProfile, ProfileDevice } from '../profiles/profile.js';
import { parseHexBig, parseHexInt, parseSize } from '../profiles/values.js';
import * as P from './paths.js';
import type { HostPort, WriteOptions } from './port.js';
import { VirtualTree, basename, dirname, type TreeNode } from './virtual-tree.js';

/**
 * An in-memory host that reacts to writes like the Linux driver core, vfio-pci, sysfb and fbcon do
 * (kernel.md §1–3, kernel-e2e.md). State is kept structured; every read renders (and caches) a
 * virtual sysfs/devfs/procfs tree from it, which `materialiseProfile` can write to disk unchanged.
 *
 * Rules simulated (each has a unit test in simulated-kernel.test.ts):
 * - `drivers/<d>/unbind` drops the `driver` link (ENODEV unless bound to <d>);
 * - `driver_override` stores a name, an empty write clears it, reads `(null)` when unset;
 * - `drivers_probe` binds the override driver if loaded, else (no override) the native driver or a
 *   `new_id` match; probe failures are silent, as in the kernel (the write still succeeds);
 * - `drivers/<d>/bind` binds (ENODEV without a match or when the override names another driver,
 *   EBUSY when already bound); `new_id` binds every matching unbound device;
 * - vfio-pci refuses bridges (EINVAL) and PFs with VFs enabled (EBUSY);
 * - `/dev/vfio/<g>` exists while at least one member is on vfio-pci — like the real kernel, whether or
 *   not the group is viable (a VMM's open fails then); `/dev/vfio/vfio` while vfio-pci is loaded;
 * - vfio-pci binding a VGA-class device removes firmware framebuffers for good: < 6.0 nothing;
 *   6.0–6.4 (Debian 6.1 included, see kernel-e2e.md) every sysfb framebuffer; >= 6.5 the ones in its
 *   BARs plus, for the boot VGA, the sysfb one (unless it is parented to another GPU);
 * - a native display driver binding a display device evicts the framebuffers in its BARs (bochs in
 *   kernel-e2e.md scenario B) and provides a framebuffer for fbcon itself;
 * - the fbcon vtconsole exists while any framebuffer is registered, and comes back bound; the dummy
 *   console is bound exactly while no fbcon console is.
 */

export type FaultErrno = 'EBUSY' | 'ENODEV' | 'EACCES' | 'EIO';

export interface FaultSpec {
  /** Matched against the path as the caller wrote it (string equality or RegExp test). */
  readonly path: string | RegExp;
  readonly errno: FaultErrno;
  /** How many matching writes fail; omitted = every matching write until `clearFaults()`. */
  readonly times?: number;
}

export interface HangSpec {
  readonly path: string | RegExp;
  /** How many matching writes hang; omitted = every one until `clearFaults()`. */
  readonly times?: number;
}

export interface WriteLogEntry {
  /** `modprobe` entries carry the module name in `path` and `value`. */
  readonly kind: 'write' | 'modprobe';
  readonly path: string;
  readonly value: string;
  /** `pending` while a hung write has not been aborted yet. */
  readonly outcome: 'ok' | 'error' | 'aborted' | 'pending';
  readonly errno?: HostErrno;
}

export interface SimulatedDeviceState {
  readonly address: string;
  readonly class: string;
  readonly vendor: string;
  readonly device: string;
  readonly driver: string | undefined;
  readonly driverOverride: string | undefined;
  readonly iommuGroup: number | undefined;
  readonly numaNode: number;
  readonly bootVga: boolean | undefined;
  readonly resetMethods: readonly string[];
  readonly sriov: { readonly totalVfs: number; readonly numVfs: number } | undefined;
  readonly vfioDev: string | undefined;
}

export interface SimulatedKernelState {
  readonly kernelRelease: string;
  readonly iommu: boolean;
  readonly iommufd: boolean;
  readonly loadedDrivers: readonly string[];
  /** Loaded modules that register no PCI driver, e.g. `vfio_iommu_type1`. */
  readonly loadedModules: readonly string[];
  readonly devices: readonly SimulatedDeviceState[];
  readonly framebuffers: readonly {
    readonly device: string;
    readonly driver: string | undefined;
    readonly claim: string | undefined;
    readonly start: string;
    readonly end: string;
    readonly parent: string | undefined;
  }[];
  /** Platform framebuffer devices unregistered for good (sysfb_disable / aperture removal). */
  readonly removedFramebuffers: readonly string[];
  readonly vtconsoles: readonly { readonly name: string; readonly description: string; readonly bound: boolean }[];
  /** `/dev/vfio/<N>` nodes present, sorted numerically. */
  readonly vfioGroups: readonly number[];
  readonly dynamicIds: Readonly<Record<string, readonly string[]>>;
}

interface Bar {
  index: number;
  start: bigint;
  end: bigint;
  flags: bigint;
}

interface Dev {
  address: PciAddress;
  classCode: number;
  vendor: string;
  device: string;
  subsystemVendor: string;
  subsystemDevice: string;
  revision: string;
  driver: string | undefined;
  nativeDriver: string | undefined;
  override: string | undefined;
  iommuGroup: number | undefined;
  numaNode: number;
  bootVga: boolean;
  bootDisplay: boolean;
  resetMethods: string[];
  sriov: { totalVfs: number; numVfs: number } | undefined;
  physfn: PciAddress | undefined;
  parent: PciAddress | undefined;
  bars: Bar[];
  consumers: PciAddress[];
  vfioDev: number | undefined;
}

interface Fb {
  device: string;
  type: string; // platform driver that matches it: `efi-framebuffer.0` → `efi-framebuffer`
  driver: string | undefined;
  claim: string | undefined;
  resource: string | undefined;
  start: bigint;
  end: bigint;
  parent: PciAddress | undefined;
}

interface Vt {
  name: string;
  description: string;
  bound: boolean;
  fbcon: boolean;
  present: boolean;
}

interface Rule {
  path: string | RegExp;
  remaining: number;
}

const VFIO_PCI = 'vfio-pci';
const PCI_STUB = 'pci-stub';
/** Drivers that leave the IOMMU group to user space (driver_managed_dma, or the pre-5.19 allow-list). */
const USER_DMA_DRIVERS = new Set([VFIO_PCI, PCI_STUB]);
/** vfio-pci variant drivers register under their module name, e.g. `nvgrace_gpu_vfio_pci` (kernel.md §5). */
const isVfioVariant = (drv: string | undefined): boolean => drv !== undefined && /_vfio_pci$/.test(drv);
const isUserDma = (drv: string | undefined): boolean => drv !== undefined && (USER_DMA_DRIVERS.has(drv) || isVfioVariant(drv));
const PLATFORM_FB_DRIVERS = ['efi-framebuffer', 'simple-framebuffer', 'vesa-framebuffer'];
const DEFAULT_CLAIMS: Record<string, string> = {
  'efi-framebuffer': 'efifb',
  'simple-framebuffer': 'simplefb',
  'vesa-framebuffer': 'vesafb',
};
/** Module name (normalised to `_`) → the driver directory it registers, where they differ. */
const MODULE_DRIVERS: Record<string, string> = {
  vfio_pci: VFIO_PCI,
  pci_stub: PCI_STUB,
  bochs: 'bochs-drm',
  i2c_nvidia_gpu: 'nvidia-gpu',
  xhci_pci: 'xhci_hcd',
  virtio_pci: 'virtio-pci',
};
/** Modules that register no PCI driver; loading one only adds `/sys/module/<name>`. */
const VFIO_IOMMU_TYPE1 = 'vfio_iommu_type1';
const NON_DRIVER_MODULES = new Set([VFIO_IOMMU_TYPE1, 'iommufd']);
const RESET_METHODS = new Set(['device_specific', 'acpi', 'flr', 'af_flr', 'pm', 'bus', 'cxl_bus']);

// `resource` file flags (include/linux/ioport.h + the BAR's low bits, as pci-sysfs prints them).
const IORESOURCE_MEM = 0x200n;
const IORESOURCE_PREFETCH = 0x2000n;
const IORESOURCE_MEM_64 = 0x100000n;
const IORESOURCE_SIZEALIGN = 0x40000n;
const IORESOURCE_ROM_ENABLE = 0x6000n;

function hex(v: number, digits: number): string {
  return `0x${v.toString(16).padStart(digits, '0')}`;
}

function isVga(d: Dev): boolean {
  return d.classCode >> 8 === 0x0300;
}

/** Header type 1/2 (PCI-PCI and CardBus bridges): vfio-pci refuses them, viability ignores them. */
function isBridge(d: Dev): boolean {
  const sub = d.classCode >> 8;
  return sub === 0x0604 || sub === 0x0609 || sub === 0x0607;
}

/** Display devices with outputs: a native driver on them registers a framebuffer fbcon can use. */
function isDisplayWithOutputs(d: Dev): boolean {
  const sub = d.classCode >> 8;
  return sub === 0x0300 || sub === 0x0380;
}

function parseRelease(release: string): { major: number; minor: number } {
  const m = /^([0-9]+)\.([0-9]+)/.exec(release);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : { major: 0, minor: 0 };
}

function atLeast(v: { major: number; minor: number }, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}

function matches(rule: Rule, path: string): boolean {
  return typeof rule.path === 'string' ? rule.path === path : rule.path.test(path);
}

/** Where `modules.dep` lists a module (only the base name matters to readers). */
function moduleDir(m: string): string {
  const n = normaliseModule(m);
  if (n === 'vfio_pci') return 'kernel/drivers/vfio/pci';
  if (n === VFIO_IOMMU_TYPE1) return 'kernel/drivers/vfio';
  return 'kernel/drivers/misc';
}

function normaliseModule(name: string): string {
  return P.normaliseModuleName(name);
}

function iomemHex(v: bigint): string {
  return v.toString(16).padStart(8, '0');
}

export class SimulatedKernel implements HostPort {
  readonly profileName: string;
  private readonly release: string;
  private readonly version: { major: number; minor: number };
  private readonly iommu: boolean;
  private readonly iommufd: boolean;
  private readonly availableModules: string[];
  private readonly iommuDevices: string[];
  private readonly cpu: HostProfile['cpu'];
  private readonly drivers = new Set<string>();
  /** Loaded modules that register no PCI driver (normalised names), e.g. `vfio_iommu_type1`. */
  private readonly modules = new Set<string>();
  private readonly platformDrivers = new Set<string>(PLATFORM_FB_DRIVERS);
  private readonly devices = new Map<PciAddress, Dev>();
  private readonly fbs = new Map<string, Fb>();
  private readonly removedFbs: string[] = [];
  private readonly vts: Vt[] = [];
  private readonly dynIds = new Map<string, string[]>();
  private nextVfioDev = 0;

  private readonly faults: (Rule & { errno: FaultErrno })[] = [];
  private readonly readFaults: (Rule & { errno: HostErrno })[] = [];
  private readonly hangs: Rule[] = [];
  private readonly hung: (() => void)[] = [];
  private readonly log: { -readonly [K in keyof WriteLogEntry]: WriteLogEntry[K] }[] = [];
  private counters = { reads: 0, writes: 0 };
  private cached: VirtualTree | undefined;

  constructor(profile: HostProfile) {
    this.profileName = profile.name;
    this.release = profile.kernelRelease;
    this.version = parseRelease(profile.kernelRelease);
    this.iommu = profile.iommu ?? true;
    this.iommufd = profile.iommufd ?? false;
    this.availableModules = [...(profile.availableModules ?? [])];
    this.iommuDevices = [...(profile.iommuDevices ?? [])];
    this.cpu = profile.cpu;
    for (const d of profile.loadedDrivers) this.drivers.add(d);
    // vfio_iommu_type1 ships with vfio-pci; a host that loaded vfio-pci through modprobe has it too (softdep).
    if (this.availableModules.some((m) => normaliseModule(m) === 'vfio_pci') && !this.availableModules.some((m) => normaliseModule(m) === VFIO_IOMMU_TYPE1)) {
      this.availableModules.push(VFIO_IOMMU_TYPE1);
    }
    for (const m of profile.loadedModules ?? (this.drivers.has(VFIO_PCI) ? [VFIO_IOMMU_TYPE1] : [])) this.modules.add(normaliseModule(m));
    for (const pd of profile.devices) this.insertDevice(pd);
    for (const f of profile.framebuffers ?? []) {
      const type = f.device.replace(/\.[0-9]+$/, '');
      const start = parseHexBig(f.start);
      this.fbs.set(f.device, {
        device: f.device,
        type,
        driver: f.driver,
        claim: f.claim ?? DEFAULT_CLAIMS[type],
        resource: f.resource,
        start,
        end: start + parseSize(f.size) - 1n,
        parent: f.parent === undefined ? undefined : parsePciAddress(f.parent),
      });
      if (f.driver !== undefined) this.platformDrivers.add(f.driver);
    }
    const vts = profile.vtconsoles ?? [
      { name: 'vtcon0', description: '(S) dummy device', bound: false },
      { name: 'vtcon1', description: '(M) frame buffer device', bound: true },
    ];
    for (const v of vts) {
      const fbcon = v.description.includes('frame buffer');
      this.vts.push({ name: v.name, description: v.description, bound: v.bound, fbcon, present: !fbcon || this.hasFramebuffer() });
    }
  }

  private insertDevice(pd: ProfileDevice): Dev {
    const address = parsePciAddress(pd.address);
    if (this.devices.has(address)) throw new InvalidArgumentError(`device ${address} already exists`);
    const bars: Bar[] = (pd.bars ?? []).map((b) => {
      const start = parseHexBig(b.start);
      let flags = IORESOURCE_MEM | IORESOURCE_SIZEALIGN;
      if (b.index === 6) flags = IORESOURCE_MEM | IORESOURCE_ROM_ENABLE;
      if (b.prefetchable) flags |= IORESOURCE_PREFETCH | 0x8n;
      if (b.is64) flags |= IORESOURCE_MEM_64 | 0x4n;
      return { index: b.index, start, end: start + parseSize(b.size) - 1n, flags };
    });
    const dev: Dev = {
      address,
      classCode: parseHexInt(pd.class, 'class'),
      vendor: pd.vendor.toLowerCase().replace(/^0x/, ''),
      device: pd.device.toLowerCase().replace(/^0x/, ''),
      subsystemVendor: (pd.subsystemVendor ?? '0000').toLowerCase().replace(/^0x/, ''),
      subsystemDevice: (pd.subsystemDevice ?? '0000').toLowerCase().replace(/^0x/, ''),
      revision: (pd.revision ?? '0x00').toLowerCase(),
      driver: pd.driver,
      nativeDriver: pd.nativeDriver ?? pd.driver,
      override: pd.driverOverride,
      iommuGroup: pd.iommuGroup,
      numaNode: pd.numaNode ?? -1,
      bootVga: pd.bootVga ?? false,
      bootDisplay: pd.bootDisplay ?? false,
      resetMethods: [...(pd.resetMethods ?? [])],
      sriov: pd.sriov ? { ...pd.sriov } : undefined,
      physfn: pd.physfn === undefined ? undefined : parsePciAddress(pd.physfn),
      parent: pd.parent === undefined ? undefined : parsePciAddress(pd.parent),
      bars,
      consumers: (pd.consumers ?? []).map((c) => parsePciAddress(c.replace(/^consumer:pci:/, ''))),
      vfioDev: undefined,
    };
    if (dev.driver === VFIO_PCI) dev.vfioDev = this.nextVfioDev++;
    this.devices.set(address, dev);
    this.dirty();
    return dev;
  }

  // ---------------------------------------------------------------- HostReader

  async readText(path: string): Promise<string | undefined> {
    P.assertSafeRelativePath(path);
    this.counters.reads++;
    this.readFault(path);
    const tree = this.tree();
    const canonical = tree.resolve(path, true);
    if (canonical === undefined) return undefined;
    const node = tree.get(canonical)!;
    if (node.kind === 'dir') throw new HostReadError(path, 'EISDIR');
    return node.kind === 'file' ? node.content : undefined;
  }

  async readLink(path: string): Promise<string | undefined> {
    P.assertSafeRelativePath(path);
    this.counters.reads++;
    this.readFault(path);
    const tree = this.tree();
    const p = tree.resolve(path, false);
    const node = p === undefined ? undefined : tree.get(p);
    return node?.kind === 'link' ? node.target : undefined;
  }

  async list(path: string): Promise<string[]> {
    P.assertSafeRelativePath(path);
    this.counters.reads++;
    this.readFault(path);
    const tree = this.tree();
    const p = tree.resolve(path, true);
    if (p === undefined) return [];
    if (tree.get(p)!.kind !== 'dir') throw new HostReadError(path, 'ENOTDIR');
    return tree.list(p);
  }

  async exists(path: string): Promise<boolean> {
    P.assertSafeRelativePath(path);
    this.counters.reads++;
    this.readFault(path);
    return this.tree().resolve(path, true) !== undefined;
  }

  // ---------------------------------------------------------------- HostWriter

  async writeText(path: string, value: string, opts: WriteOptions = {}): Promise<void> {
    P.assertSafeRelativePath(path);
    this.counters.writes++;
    const entry: { -readonly [K in keyof WriteLogEntry]: WriteLogEntry[K] } = { kind: 'write', path, value, outcome: 'pending' };
    this.log.push(entry);
    const signal = opts.signal;
    if (signal?.aborted) {
      entry.outcome = 'aborted';
      throw new TimeoutError(`writing ${JSON.stringify(value)} to ${path} was aborted before it started`, { cause: signal.reason });
    }
    if (this.take(this.hangs, path)) {
      // Like a driver's remove() that never returns: the kernel keeps the writer's thread, whatever the
      // caller's signal says. The write stays `pending` until `releaseHangs()` lets it finish (and apply).
      await new Promise<void>((resolve) => this.hung.push(resolve));
    }
    const fault = this.take(this.faults, path);
    if (fault) {
      entry.outcome = 'error';
      entry.errno = fault.errno;
      throw new HostWriteError(path, value, fault.errno);
    }
    try {
      this.applyWrite(path, value);
      entry.outcome = 'ok';
    } catch (err) {
      entry.outcome = 'error';
      if (err instanceof HostWriteError) entry.errno = err.errno;
      throw err;
    }
  }

  async loadModule(name: string, opts: WriteOptions = {}): Promise<void> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw new InvalidArgumentError(`invalid module name ${JSON.stringify(name)}`);
    const entry: { -readonly [K in keyof WriteLogEntry]: WriteLogEntry[K] } = { kind: 'modprobe', path: name, value: name, outcome: 'pending' };
    this.log.push(entry);
    if (opts.signal?.aborted) {
      entry.outcome = 'aborted';
      throw new TimeoutError(`modprobe ${name} was aborted`, { cause: opts.signal.reason });
    }
    if (this.take(this.hangs, `modprobe:${name}`)) await new Promise<void>((resolve) => this.hung.push(resolve));
    const fault = this.take(this.faults, `modprobe:${name}`);
    if (fault) {
      entry.outcome = 'error';
      entry.errno = fault.errno;
      throw new HostWriteError(`modprobe:${name}`, name, fault.errno);
    }
    const want = normaliseModule(name);
    if (NON_DRIVER_MODULES.has(want)) {
      if (!this.modules.has(want) && !this.availableModules.some((m) => normaliseModule(m) === want)) {
        entry.outcome = 'error';
        entry.errno = 'ENOENT';
        throw new HostWriteError(`modprobe:${name}`, name, 'ENOENT');
      }
      this.modules.add(want);
      entry.outcome = 'ok';
      this.afterChange();
      return;
    }
    const driver = MODULE_DRIVERS[want] ?? want;
    if (this.drivers.has(driver)) {
      entry.outcome = 'ok'; // modprobe of a loaded module succeeds and does nothing
      return;
    }
    if (!this.availableModules.some((m) => normaliseModule(m) === want)) {
      entry.outcome = 'error';
      entry.errno = 'ENOENT';
      throw new HostWriteError(`modprobe:${name}`, name, 'ENOENT');
    }
    // modprobe honours vfio.ko's `softdep post: vfio_iommu_type1` (seen on Debian 6.1 and 6.12 in the e2e guests).
    if (driver === VFIO_PCI && this.availableModules.some((m) => normaliseModule(m) === VFIO_IOMMU_TYPE1)) this.modules.add(VFIO_IOMMU_TYPE1);
    this.registerDriver(driver);
    entry.outcome = 'ok';
  }

  // ---------------------------------------------------------------- test controls

  /** Makes matching writes (or `modprobe:<name>` loads) fail with `errno`. */
  injectFault(spec: FaultSpec): void {
    this.faults.push({ path: spec.path, errno: spec.errno, remaining: spec.times ?? Infinity });
  }

  /** Makes matching reads fail with `HostReadError(errno)`. */
  injectReadFault(spec: { path: string | RegExp; errno: HostErrno; times?: number }): void {
    this.readFaults.push({ path: spec.path, errno: spec.errno, remaining: spec.times ?? Infinity });
  }

  /**
   * Makes matching writes hang the way a write stuck in the kernel does: they never settle and ignore
   * their AbortSignal (the caller must walk away), until `releaseHangs()`.
   */
  injectHang(spec: HangSpec): void {
    this.hangs.push({ path: spec.path, remaining: spec.times ?? Infinity });
  }

  /** Lets every hung write finish now; each then applies its effect, as a late kernel return would. */
  releaseHangs(): void {
    for (const resolve of this.hung.splice(0)) resolve();
  }

  /** Writes that are hung right now. */
  get hungWrites(): number {
    return this.hung.length;
  }

  clearFaults(): void {
    this.faults.length = 0;
    this.readFaults.length = 0;
    this.hangs.length = 0;
  }

  /** Every attempted write and module load, in order. */
  get writeLog(): readonly WriteLogEntry[] {
    return this.log.map((e) => ({ ...e }));
  }

  clearWriteLog(): void {
    this.log.length = 0;
  }

  stats(): { reads: number; writes: number } {
    return { ...this.counters };
  }

  /** Someone else (a human, another agent) binds/unbinds a device directly; no driver-core rules apply. */
  setDriverBinding(address: string, driver: string | undefined): void {
    const d = this.dev(address);
    if (driver !== undefined) this.drivers.add(driver);
    this.setDriver(d, driver);
    this.afterChange();
  }

  /** Hot-remove: the device (and anything below it, and its VFs) disappears. */
  removeDevice(address: string): void {
    const d = this.dev(address);
    const doomed = new Set<PciAddress>([d.address]);
    let grew = true;
    while (grew) {
      grew = false;
      for (const o of this.devices.values()) {
        if (!doomed.has(o.address) && ((o.parent && doomed.has(o.parent)) || (o.physfn && doomed.has(o.physfn)))) {
          doomed.add(o.address);
          grew = true;
        }
      }
    }
    for (const a of doomed) this.devices.delete(a);
    for (const o of this.devices.values()) o.consumers = o.consumers.filter((c) => !doomed.has(c));
    this.afterChange();
  }

  /** Hot-add: the device appears and, without an explicit `driver`, is probed like a new device. */
  addDevice(device: ProfileDevice): void {
    const d = this.insertDevice(device);
    if (d.driver !== undefined) this.drivers.add(d.driver);
    else this.probe(d);
    this.afterChange();
  }

  /** A deep, JSON-friendly copy of the current state for assertions. */
  state(): SimulatedKernelState {
    const devices = [...this.devices.values()].sort((a, b) => (a.address < b.address ? -1 : 1));
    return {
      kernelRelease: this.release,
      iommu: this.iommu,
      iommufd: this.iommufd,
      loadedDrivers: [...this.drivers].sort(),
      loadedModules: [...this.modules].sort(),
      devices: devices.map((d) => ({
        address: d.address,
        class: hex(d.classCode, 6),
        vendor: d.vendor,
        device: d.device,
        driver: d.driver,
        driverOverride: d.override,
        iommuGroup: this.iommu ? d.iommuGroup : undefined,
        numaNode: d.numaNode,
        bootVga: isVga(d) ? d.bootVga : undefined,
        resetMethods: [...d.resetMethods],
        sriov: d.sriov ? { ...d.sriov } : undefined,
        vfioDev: d.vfioDev === undefined ? undefined : `vfio${d.vfioDev}`,
      })),
      framebuffers: [...this.fbs.values()].map((f) => ({
        device: f.device,
        driver: f.driver,
        claim: f.claim,
        start: `0x${f.start.toString(16)}`,
        end: `0x${f.end.toString(16)}`,
        parent: f.parent,
      })),
      removedFramebuffers: [...this.removedFbs],
      vtconsoles: this.vts.filter((v) => v.present).map((v) => ({ name: v.name, description: v.description, bound: v.bound })),
      vfioGroups: this.vfioGroupsWithNode(),
      dynamicIds: Object.fromEntries([...this.dynIds].map(([k, v]) => [k, [...v]])),
    };
  }

  /** The rendered host tree (what NodeHost would see on a materialised copy), parents first. */
  treeEntries(): [string, TreeNode][] {
    return this.tree().entries();
  }

  // ---------------------------------------------------------------- driver core

  private dev(address: string): Dev {
    const d = isPciAddress(address) ? this.devices.get(address) : undefined;
    if (!d) throw new InvalidArgumentError(`no device ${address} in the simulated kernel`);
    return d;
  }

  private take<R extends Rule>(rules: R[], path: string): R | undefined {
    const r = rules.find((x) => x.remaining > 0 && matches(x, path));
    if (r) r.remaining--;
    return r;
  }

  private readFault(path: string): void {
    const f = this.take(this.readFaults, path);
    if (f) throw new HostReadError(path, f.errno);
  }

  private fail(path: string, value: string, errno: HostErrno): never {
    throw new HostWriteError(path, value, errno);
  }

  private applyWrite(path: string, value: string): void {
    const tree = this.tree();
    const canonical = tree.resolve(path, true);
    if (canonical === undefined) this.fail(path, value, 'ENOENT');
    const node = tree.get(canonical)!;
    if (node.kind === 'dir') this.fail(path, value, 'EISDIR');
    const name = basename(canonical);
    const dir = dirname(canonical);
    const arg = value.replace(/\n$/, '');
    let m: RegExpExecArray | null;

    if (canonical === P.PCI_DRIVERS_PROBE) return this.writeDriversProbe(path, value, arg.trim());
    if ((m = /^sys\/bus\/pci\/drivers\/([^/]+)\/(bind|unbind|new_id|remove_id)$/.exec(canonical))) {
      const drv = m[1]!;
      switch (m[2]) {
        case 'bind':
          return this.writeBind(path, value, drv, arg.trim());
        case 'unbind':
          return this.writeUnbind(path, value, drv, arg.trim());
        case 'new_id':
          return this.writeNewId(path, value, drv, arg.trim());
        default:
          return this.writeRemoveId(path, value, drv, arg.trim());
      }
    }
    if ((m = /^sys\/bus\/platform\/drivers\/([^/]+)\/(bind|unbind)$/.exec(canonical))) {
      return this.writePlatform(path, value, m[1]!, m[2] as 'bind' | 'unbind', arg.trim());
    }
    if ((m = /^sys\/devices\/virtual\/vtconsole\/([^/]+)\/bind$/.exec(canonical))) {
      return this.writeVtBind(path, value, m[1]!, arg.trim());
    }
    const owner = basename(dir);
    if (isPciAddress(owner) && this.devices.has(owner) && canonical === this.devDir(this.devices.get(owner)!) + `/${name}`) {
      const d = this.devices.get(owner)!;
      switch (name) {
        case 'driver_override':
          return this.writeOverride(path, value, d, arg);
        case 'reset_method':
          return this.writeResetMethod(path, value, d, arg.trim());
        case 'sriov_numvfs':
          return this.writeNumVfs(path, value, d, arg.trim());
        case 'numa_node': {
          if (!/^-?[0-9]+$/.test(arg.trim())) this.fail(path, value, 'EINVAL');
          d.numaNode = Number(arg.trim());
          return this.dirty();
        }
      }
    }
    // Read-only attributes (mode 0444) refuse writes even for root.
    this.fail(path, value, 'EACCES');
  }

  private writeDriversProbe(path: string, value: string, addr: string): void {
    const d = isPciAddress(addr) ? this.devices.get(addr) : undefined;
    if (!d) this.fail(path, value, 'ENODEV');
    this.probe(d);
    this.afterChange();
  }

  private writeBind(path: string, value: string, drv: string, addr: string): void {
    const d = isPciAddress(addr) ? this.devices.get(addr) : undefined;
    if (!d || !this.driverMatches(d, drv)) this.fail(path, value, 'ENODEV');
    if (d.driver !== undefined) this.fail(path, value, 'EBUSY');
    const err = this.tryProbe(d, drv);
    if (err) this.fail(path, value, err);
    this.afterChange();
  }

  private writeUnbind(path: string, value: string, drv: string, addr: string): void {
    const d = isPciAddress(addr) ? this.devices.get(addr) : undefined;
    if (!d || d.driver !== drv) this.fail(path, value, 'ENODEV');
    this.setDriver(d, undefined);
    this.afterChange();
  }

  private writeNewId(path: string, value: string, drv: string, arg: string): void {
    const fields = arg.split(/\s+/).filter(Boolean);
    if (fields.length < 2 || fields.length > 7 || !fields.every((f) => /^(0x)?[0-9a-fA-F]{1,8}$/.test(f))) this.fail(path, value, 'EINVAL');
    const id = `${fields[0]!.toLowerCase().replace(/^0x/, '').padStart(4, '0')}:${fields[1]!.toLowerCase().replace(/^0x/, '').padStart(4, '0')}`;
    const ids = this.dynIds.get(drv) ?? [];
    if (!ids.includes(id)) ids.push(id);
    this.dynIds.set(drv, ids);
    // driver_attach(): every unbound device the driver now matches is probed; failures are logged, not returned.
    for (const d of this.devices.values()) {
      if (d.driver === undefined && this.driverMatches(d, drv)) this.tryProbe(d, drv);
    }
    this.afterChange();
  }

  private writeRemoveId(path: string, value: string, drv: string, arg: string): void {
    const fields = arg.split(/\s+/).filter(Boolean);
    if (fields.length < 2) this.fail(path, value, 'EINVAL');
    const id = `${fields[0]!.toLowerCase().replace(/^0x/, '').padStart(4, '0')}:${fields[1]!.toLowerCase().replace(/^0x/, '').padStart(4, '0')}`;
    const ids = this.dynIds.get(drv) ?? [];
    if (!ids.includes(id)) this.fail(path, value, 'ENODEV');
    this.dynIds.set(
      drv,
      ids.filter((x) => x !== id),
    );
    this.dirty();
  }

  private writeOverride(path: string, value: string, d: Dev, arg: string): void {
    // driver_set_override(): up to the first newline; empty clears; longer than a page is refused.
    const v = arg.split('\n', 1)[0]!;
    if (v.length >= 4096) this.fail(path, value, 'EINVAL');
    d.override = v === '' ? undefined : v;
    this.dirty();
  }

  private writeResetMethod(path: string, value: string, d: Dev, arg: string): void {
    if (arg === 'default' || arg === '') {
      d.resetMethods = arg === '' ? [] : d.resetMethods;
      return this.dirty();
    }
    const names = arg.split(/\s+/);
    if (!names.every((n) => RESET_METHODS.has(n) && d.resetMethods.includes(n))) this.fail(path, value, 'EINVAL');
    d.resetMethods = names;
    this.dirty();
  }

  private writeNumVfs(path: string, value: string, d: Dev, arg: string): void {
    if (!d.sriov || !/^[0-9]+$/.test(arg)) this.fail(path, value, 'EINVAL');
    const n = Number(arg);
    if (n === d.sriov.numVfs) return;
    if (n === 0) {
      d.sriov.numVfs = 0;
      for (const vf of [...this.devices.values()].filter((x) => x.physfn === d.address)) this.devices.delete(vf.address);
      return this.afterChange();
    }
    // sriov_numvfs_store(): changing a non-zero count needs a 0 first; creating VFs is not simulated.
    if (d.sriov.numVfs > 0) this.fail(path, value, 'EBUSY');
    this.fail(path, value, 'EINVAL');
  }

  private writePlatform(path: string, value: string, drv: string, op: 'bind' | 'unbind', name: string): void {
    const fb = this.fbs.get(name);
    if (op === 'unbind') {
      if (!fb || fb.driver !== drv) this.fail(path, value, 'ENODEV');
      fb.driver = undefined;
    } else {
      // A device unregistered by sysfb_disable()/aperture removal is gone: bind says ENODEV (kernel-e2e.md A).
      if (!fb || fb.type !== drv) this.fail(path, value, 'ENODEV');
      if (fb.driver !== undefined) this.fail(path, value, 'EBUSY');
      fb.driver = drv;
    }
    this.afterChange();
  }

  private writeVtBind(path: string, value: string, name: string, arg: string): void {
    const vt = this.vts.find((v) => v.name === name && v.present);
    if (!vt) this.fail(path, value, 'ENODEV');
    if (arg !== '0' && arg !== '1') this.fail(path, value, 'EINVAL');
    // A system driver `(S)` cannot be unbound directly; the kernel ignores the request.
    if (vt.description.startsWith('(S)')) return;
    vt.bound = arg === '1';
    this.syncDummyConsole();
    this.dirty();
  }

  /**
   * The dummy console takes over whenever no fbcon console is bound, and hands back when one binds
   * again: its `bind` reads 1 exactly then (seen on 6.1 and 6.12 in the kernel e2e tests).
   */
  private syncDummyConsole(): void {
    const fbconBound = this.vts.some((v) => v.fbcon && v.present && v.bound);
    for (const vt of this.vts) if (!vt.fbcon && vt.present && /dummy/.test(vt.description)) vt.bound = !fbconBound;
  }

  private registerDriver(driver: string): void {
    this.drivers.add(driver);
    // driver_register() → driver_attach(): unbound devices the new driver matches get probed.
    for (const d of this.devices.values()) {
      if (d.driver === undefined && this.driverMatches(d, driver)) this.tryProbe(d, driver);
    }
    this.afterChange();
  }

  /** pci_bus_match(): driver_override wins; vfio-pci's own table only matches through it. */
  private driverMatches(d: Dev, drv: string): boolean {
    if (!this.drivers.has(drv)) return false;
    if (d.override !== undefined) return d.override === drv;
    if (drv !== VFIO_PCI && d.nativeDriver === drv) return true;
    return (this.dynIds.get(drv) ?? []).includes(`${d.vendor}:${d.device}`);
  }

  /** device_attach() for one device: tries the matching drivers, swallowing probe errors. */
  private probe(d: Dev): void {
    if (d.driver !== undefined) return;
    const candidates = d.override !== undefined ? [d.override] : [...(d.nativeDriver ? [d.nativeDriver] : []), ...this.dynIds.keys()];
    for (const drv of candidates) {
      if (this.driverMatches(d, drv) && this.tryProbe(d, drv) === undefined) return;
    }
  }

  /** really_probe(): the driver's probe either binds or returns an errno. */
  private tryProbe(d: Dev, drv: string): HostErrno | undefined {
    if (drv === VFIO_PCI) {
      if (isBridge(d)) return 'EINVAL'; // vfio_pci_core_register_device: non-normal header
      if (d.sriov && d.sriov.numVfs > 0) return 'EBUSY'; // "Cannot bind to PF with SR-IOV enabled"
    }
    this.setDriver(d, drv);
    if (drv === VFIO_PCI && isVga(d) && atLeast(this.version, 6, 0)) this.apertureRemoveConflicting(d);
    if (!isUserDma(drv) && isDisplayWithOutputs(d)) this.apertureRemoveConflicting(d);
    return undefined;
  }

  private setDriver(d: Dev, drv: string | undefined): void {
    if (d.driver === VFIO_PCI && drv !== VFIO_PCI) d.vfioDev = undefined;
    if (drv === VFIO_PCI && d.vfioDev === undefined) d.vfioDev = this.nextVfioDev++;
    d.driver = drv;
    this.dirty();
  }

  /** aperture_remove_conflicting_pci_devices() with the per-version sysfb rule (kernel.md §3.2, kernel-e2e.md). */
  private apertureRemoveConflicting(d: Dev): void {
    const memBars = d.bars;
    for (const fb of [...this.fbs.values()]) {
      const overlaps = memBars.some((b) => fb.start <= b.end && b.start <= fb.end);
      let sysfb = false;
      if (atLeast(this.version, 6, 0) && !atLeast(this.version, 6, 5)) sysfb = true;
      else if (atLeast(this.version, 6, 5)) sysfb = d.bootVga && isVga(d) && (fb.parent === undefined || fb.parent === d.address);
      if (overlaps || sysfb) {
        this.fbs.delete(fb.device);
        this.removedFbs.push(fb.device);
      }
    }
  }

  private hasFramebuffer(): boolean {
    for (const f of this.fbs.values()) if (f.driver !== undefined) return true;
    for (const d of this.devices.values()) {
      if (d.driver !== undefined && !isUserDma(d.driver) && isDisplayWithOutputs(d)) return true;
    }
    return false;
  }

  /** fbcon's vtconsole exists while a framebuffer is registered and rebinds when one comes back (kernel-e2e.md R, A). */
  private afterChange(): void {
    const fb = this.hasFramebuffer();
    for (const vt of this.vts) {
      if (!vt.fbcon) continue;
      if (!fb) vt.present = false;
      else if (!vt.present) {
        vt.present = true;
        vt.bound = true;
      }
    }
    this.syncDummyConsole();
    this.dirty();
  }

  private vfioGroupsWithNode(): number[] {
    if (!this.iommu) return [];
    const groups = new Map<number, Dev[]>();
    for (const d of this.devices.values()) {
      if (d.iommuGroup === undefined) continue;
      const g = groups.get(d.iommuGroup) ?? [];
      g.push(d);
      groups.set(d.iommuGroup, g);
    }
    const out: number[] = [];
    for (const [n, members] of groups) {
      // The real kernel creates the node as soon as one member binds to vfio-pci, viable or not
      // (seen on 6.1 and 6.12 in the kernel e2e tests); viability is only checked when a VMM opens it.
      if (members.some((m) => m.driver === VFIO_PCI || isVfioVariant(m.driver))) out.push(n);
    }
    return out.sort((a, b) => a - b);
  }

  // ---------------------------------------------------------------- rendering

  private dirty(): void {
    this.cached = undefined;
  }

  private devDir(d: Dev): string {
    const parent = d.parent ? this.devices.get(d.parent) : undefined;
    if (parent) return `${this.devDir(parent)}/${d.address}`;
    const { domain, bus } = pciAddressParts(d.address);
    return `sys/devices/pci${hex(domain, 4).slice(2)}:${hex(bus, 2).slice(2)}/${d.address}`;
  }

  private fbDir(f: Fb): string {
    const parent = f.parent ? this.devices.get(f.parent) : undefined;
    return parent ? `${this.devDir(parent)}/${f.device}` : `sys/devices/platform/${f.device}`;
  }

  private tree(): VirtualTree {
    if (!this.cached) this.cached = this.render();
    return this.cached;
  }

  private render(): VirtualTree {
    const t = new VirtualTree();
    t.mkdir(P.PCI_DEVICES);
    t.mkdir(P.PCI_DRIVERS);
    t.file(P.PCI_DRIVERS_PROBE, '');
    t.mkdir(P.IOMMU_GROUPS);
    t.mkdir(P.IOMMU_CLASS);
    for (const u of this.iommu ? this.iommuDevices : []) {
      t.file(`sys/devices/virtual/iommu/${u}/uevent`, '');
      t.linkTo(`${P.IOMMU_CLASS}/${u}`, `sys/devices/virtual/iommu/${u}`);
    }
    t.mkdir(P.PLATFORM_DEVICES);
    t.mkdir(P.PLATFORM_DRIVERS);
    t.mkdir(P.VTCONSOLES);

    for (const drv of this.drivers) {
      const dir = P.pciDriver(drv);
      for (const f of ['bind', 'unbind', 'new_id', 'remove_id', 'uevent']) t.file(`${dir}/${f}`, '');
    }
    const devices = [...this.devices.values()].sort((a, b) => (a.address < b.address ? -1 : 1));
    const vfioGroups = new Set(this.vfioGroupsWithNode());
    for (const d of devices) {
      const dir = this.devDir(d);
      t.mkdir(dir);
      t.file(`${dir}/class`, `${hex(d.classCode, 6)}\n`);
      t.file(`${dir}/vendor`, `0x${d.vendor}\n`);
      t.file(`${dir}/device`, `0x${d.device}\n`);
      t.file(`${dir}/subsystem_vendor`, `0x${d.subsystemVendor}\n`);
      t.file(`${dir}/subsystem_device`, `0x${d.subsystemDevice}\n`);
      t.file(`${dir}/revision`, `${d.revision}\n`);
      t.file(`${dir}/numa_node`, `${d.numaNode}\n`);
      t.file(`${dir}/driver_override`, `${d.override ?? '(null)'}\n`);
      // pci_enable_device() is called by native drivers' probe; vfio-pci enables only when a VMM opens it.
      t.file(`${dir}/enable`, d.driver !== undefined && !isUserDma(d.driver) ? '1\n' : '0\n');
      t.file(`${dir}/resource`, this.renderResource(d));
      if (isVga(d)) t.file(`${dir}/boot_vga`, d.bootVga ? '1\n' : '0\n');
      if (d.bootDisplay) t.file(`${dir}/boot_display`, '1\n');
      if (d.resetMethods.length > 0) {
        // reset_method appeared in 5.15 (kernel.md §1.2); `reset` is older.
        if (atLeast(this.version, 5, 15)) t.file(`${dir}/reset_method`, `${d.resetMethods.join(' ')}\n`);
        t.file(`${dir}/reset`, '');
      }
      if (d.sriov) {
        t.file(`${dir}/sriov_totalvfs`, `${d.sriov.totalVfs}\n`);
        t.file(`${dir}/sriov_numvfs`, `${d.sriov.numVfs}\n`);
      }
      if (d.physfn && this.devices.has(d.physfn)) t.linkTo(`${dir}/physfn`, this.devDir(this.devices.get(d.physfn)!));
      if (d.driver !== undefined) {
        t.linkTo(`${dir}/driver`, P.pciDriver(d.driver));
        t.linkTo(`${P.pciDriver(d.driver)}/${d.address}`, dir);
      }
      if (this.iommu && d.iommuGroup !== undefined) {
        t.linkTo(`${dir}/iommu_group`, P.iommuGroup(d.iommuGroup));
        t.linkTo(`${P.iommuGroupDevices(d.iommuGroup)}/${d.address}`, dir);
      }
      if (d.driver === VFIO_PCI && d.vfioDev !== undefined && this.iommufd) {
        t.file(`${dir}/vfio-dev/vfio${d.vfioDev}/dev`, `511:${d.vfioDev}\n`);
        t.file(`${P.VFIO_DEVICES}/vfio${d.vfioDev}`, '');
      }
      t.linkTo(P.pciDevice(d.address), dir);
    }
    // SR-IOV: the PF links each VF as virtfnN, in address order.
    for (const pf of devices) {
      const vfs = devices.filter((v) => v.physfn === pf.address);
      vfs.forEach((vf, i) => t.linkTo(`${this.devDir(pf)}/virtfn${i}`, this.devDir(vf)));
    }
    // Device links created by quirk_gpu_hda & co (kernel.md §1.2).
    for (const sup of devices) {
      for (const c of sup.consumers) {
        const con = this.devices.get(c);
        if (!con) continue;
        const link = `sys/devices/virtual/devlink/pci:${sup.address}--pci:${c}`;
        t.file(`${link}/status`, 'active\n');
        t.linkTo(`${this.devDir(sup)}/consumer:pci:${c}`, link);
        t.linkTo(`${this.devDir(con)}/supplier:pci:${sup.address}`, link);
      }
    }
    for (const drv of this.platformDrivers) {
      const dir = P.platformDriver(drv);
      for (const f of ['bind', 'unbind', 'uevent']) t.file(`${dir}/${f}`, '');
    }
    for (const f of this.fbs.values()) {
      const dir = this.fbDir(f);
      t.file(`${dir}/modalias`, `platform:${f.type}\n`);
      t.file(`${dir}/driver_override`, '(null)\n');
      if (f.driver !== undefined) {
        t.linkTo(`${dir}/driver`, P.platformDriver(f.driver));
        t.linkTo(`${P.platformDriver(f.driver)}/${f.device}`, dir);
      }
      t.linkTo(P.platformDevice(f.device), dir);
    }
    for (const vt of this.vts) {
      if (!vt.present) continue;
      const dir = `sys/devices/virtual/vtconsole/${vt.name}`;
      t.file(`${dir}/bind`, vt.bound ? '1\n' : '0\n');
      t.file(`${dir}/name`, `${vt.description}\n`);
      t.linkTo(P.vtconsole(vt.name), dir);
    }
    if (this.drivers.has(VFIO_PCI) || [...this.drivers].some(isVfioVariant)) {
      t.file(P.VFIO_CONTAINER, '');
      for (const g of vfioGroups) t.file(P.vfioGroupNode(g), '');
    }
    if (this.iommufd) t.file(P.DEV_IOMMU, '');
    for (const m of this.modules) t.file(`${P.sysModule(m)}/initstate`, 'live\n');
    if (this.drivers.has(VFIO_PCI)) t.file(`${P.sysModule('vfio_pci')}/initstate`, 'live\n');
    t.file(P.PROC_IOMEM, this.renderIomem());
    t.file(P.OSRELEASE, `${this.release}\n`);
    if (this.cpu) {
      const head = this.cpu === 'arm64' ? 'processor\t: 0\nBogoMIPS\t: 2000.00\nCPU implementer\t: 0x41\nCPU architecture: 8\n' : `processor\t: 0\nvendor_id\t: ${this.cpu === 'intel' ? 'GenuineIntel' : 'AuthenticAMD'}\ncpu family\t: 25\n`;
      t.file(P.PROC_CPUINFO, head);
    }
    t.file(
      P.modulesDep(this.release),
      this.availableModules.map((m) => `${moduleDir(m)}/${m}.ko:\n`).join(''),
    );
    return t;
  }

  private renderResource(d: Dev): string {
    const lines: string[] = [];
    const h = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;
    for (let i = 0; i <= 6; i++) {
      const b = d.bars.find((x) => x.index === i);
      lines.push(b ? `${h(b.start)} ${h(b.end)} ${h(b.flags)}` : `${h(0n)} ${h(0n)} ${h(0n)}`);
    }
    return `${lines.join('\n')}\n`;
  }

  /** /proc/iomem: bus windows spanning their devices, BARs named by address, framebuffer claims inside. */
  private renderIomem(): string {
    interface Range {
      start: bigint;
      end: bigint;
      name: string;
      rank: number; // at equal ranges: window, then BAR, then sysfb resource, then claim
    }
    const ranges: Range[] = [];
    const childrenOf = new Map<string, Dev[]>();
    for (const d of this.devices.values()) {
      const key = d.parent ?? `root:${d.address.slice(0, 7)}`;
      const list = childrenOf.get(key) ?? [];
      list.push(d);
      childrenOf.set(key, list);
    }
    const barsBelow = (key: string): Bar[] =>
      (childrenOf.get(key) ?? []).flatMap((c) => [...c.bars, ...barsBelow(c.address)]);
    const windows = (key: string, busName: string): void => {
      const bars = barsBelow(key);
      const low = bars.filter((b) => b.start < 0x100000000n);
      const high = bars.filter((b) => b.start >= 0x100000000n);
      for (const set of [low, high]) {
        if (set.length === 0) continue;
        const start = set.reduce((m, b) => (b.start < m ? b.start : m), set[0]!.start);
        const end = set.reduce((m, b) => (b.end > m ? b.end : m), set[0]!.end);
        ranges.push({ start, end, name: `PCI Bus ${busName}`, rank: 0 });
      }
    };
    for (const key of childrenOf.keys()) {
      if (key.startsWith('root:')) windows(key, key.slice(5));
      else {
        const first = childrenOf.get(key)![0]!;
        windows(key, first.address.slice(0, 7));
      }
    }
    for (const d of this.devices.values()) for (const b of d.bars) ranges.push({ start: b.start, end: b.end, name: d.address, rank: 1 });
    for (const f of this.fbs.values()) {
      // Unbinding the framebuffer driver releases its claim (kernel-e2e.md R: the efifb line leaves iomem).
      if (f.driver !== undefined && f.resource !== undefined) ranges.push({ start: f.start, end: f.end, name: f.resource, rank: 2 });
      if (f.driver !== undefined && f.claim !== undefined) ranges.push({ start: f.start, end: f.end, name: f.claim, rank: 3 });
    }
    ranges.sort((a, b) => (a.start !== b.start ? (a.start < b.start ? -1 : 1) : a.end !== b.end ? (a.end > b.end ? -1 : 1) : a.rank - b.rank));
    const stack: Range[] = [];
    let out = '';
    for (const r of ranges) {
      while (stack.length > 0 && !(stack[stack.length - 1]!.start <= r.start && r.end <= stack[stack.length - 1]!.end)) stack.pop();
      out += `${'  '.repeat(stack.length)}${iomemHex(r.start)}-${iomemHex(r.end)} : ${r.name}\n`;
      stack.push(r);
    }
    return out;
  }
}
