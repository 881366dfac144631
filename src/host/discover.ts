import { comparePciAddress, normaliseHexId, parsePciAddress, type PciAddress } from '../core/pci-address.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { HostReadError } from '../core/errors.js';
import type { HostReader } from '../sysfs/port.js';
import type { Framebuffer, Gpu, HostSnapshot, IommuGroup, IommuPlatform, PciFunction, VtConsole } from './model.js';
import { gpuKindOf, isBridgeClass } from './classify.js';
import { consumerLinkTargets, findCompanions, slotOf } from './companions.js';
import { findFramebufferClaim, framebufferOwner, framebufferTypeOf } from './framebuffer.js';
import { iomemHasAddresses, parseIomem } from './iomem.js';
import { findBarClaims } from './readiness.js';
import { parseKernelRelease } from './kernel-version.js';
import { parseResourceFile } from './resource.js';
import { compareVtConsoleNames, vtConsoleKind } from './vtconsole.js';
import * as P from '../sysfs/paths.js';

export interface DiscoverOptions {
  /**
   * `verdict` (default) reads the full attribute set only for GPU candidates, the members of their
   * IOMMU groups and their slot siblings; every other function gets identity, class, driver and
   * group only (its other fields read as absent). `full` reads everything for every function.
   */
  readonly detail?: 'verdict' | 'full';
  readonly logger?: Logger;
}

/** What every function needs: identity, class, driver (and the group, which comes from the group listing). */
interface BasicFunction {
  readonly address: PciAddress;
  readonly vendorId: string;
  readonly deviceId: string;
  readonly classCode: number;
  readonly driver: string | undefined;
}

/**
 * Reads the host through `reader` and returns its read model. Read-only; every independent read is
 * issued concurrently and every file is read at most once. A device that disappears while being
 * read (hot-remove) or whose identity files are unreadable garbage is left out with a warning;
 * its address still shows up in its IOMMU group's `members`, so the verdict sees a member it has
 * no function for and must treat it as a blocker.
 */
export async function discoverHost(reader: HostReader, opts: DiscoverOptions = {}): Promise<HostSnapshot> {
  const logger = opts.logger ?? silentLogger;
  const full = opts.detail === 'full';

  const [deviceNames, groupNames, platformNames, vtNames, osrelease, vfioLoaded, iommufd, devVfio, iommuDevices, type1Loaded] = await Promise.all([
    reader.list(P.PCI_DEVICES),
    reader.list(P.IOMMU_GROUPS),
    reader.list(P.PLATFORM_DEVICES),
    reader.list(P.VTCONSOLES),
    reader.readText(P.OSRELEASE),
    reader.exists(P.pciDriver('vfio-pci')),
    reader.exists(P.DEV_IOMMU),
    reader.list(P.DEV_VFIO),
    reader.list(P.IOMMU_CLASS),
    reader.exists(P.sysModule(P.VFIO_IOMMU_TYPE1)),
  ]);
  const kernel = parseKernelRelease(osrelease);
  // With the IOMMU off /sys/class/iommu is empty: the CPU tells Intel, AMD and arm64 apart.
  const cpuinfo = iommuDevices.length === 0 ? await reader.readText(P.PROC_CPUINFO).catch(() => undefined) : undefined;
  const unreadable: { address: PciAddress; error: string }[] = [];

  const addresses = uniqueAddresses(deviceNames);
  const groupIds = groupNames.filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  const fbNames = platformNames.filter((n) => framebufferTypeOf(n) !== undefined).sort();

  const [basics, groups, fbLinks, iomem, vtconsoles, [vfioLoadable = false, type1Loadable = false]] = await Promise.all([
    Promise.all(addresses.map((a) => readBasic(reader, a, logger).catch((err: unknown) => unreadableDevice(a, err, unreadable, logger)))),
    Promise.all(groupIds.map(async (id): Promise<IommuGroup> => ({ id, members: uniqueAddresses(await reader.list(P.iommuGroupDevices(id))) }))),
    Promise.all(fbNames.map(async (name) => ({ name, ...(await readFramebufferLinks(reader, name)) }))),
    // Always read: besides framebuffer ownership it tells whether anything claims a GPU's BARs.
    reader.readText(P.PROC_IOMEM).then((t) => parseIomem(t ?? '')),
    Promise.all(vtNames.filter(isSafeComponent).map((n) => readVtConsole(reader, n))),
    modulesAvailable(reader, kernel.release, [vfioLoaded ? undefined : 'vfio-pci', type1Loaded ? undefined : P.VFIO_IOMMU_TYPE1]),
  ]);

  const groupOf = new Map<PciAddress, number>();
  for (const g of groups) for (const m of g.members) groupOf.set(m, g.id);
  const present = basics.filter((b): b is BasicFunction => b !== undefined);

  // Which functions need the full attribute set: GPU candidates, everything sharing a group or a
  // slot with one (the verdict and planner look at those), or all of them in `full` mode.
  const candidates = new Set(present.filter((b) => gpuKindOf(b.classCode, b.vendorId) !== undefined).map((b) => b.address));
  const relevantGroups = new Set<number>();
  const relevantSlots = new Set<string>();
  for (const a of candidates) {
    const g = groupOf.get(a);
    if (g !== undefined) relevantGroups.add(g);
    relevantSlots.add(slotOf(a));
  }
  const needsDetail = (b: BasicFunction): boolean =>
    full || candidates.has(b.address) || relevantSlots.has(slotOf(b.address)) || relevantGroups.has(groupOf.get(b.address) ?? -1);

  const detailed = (
    await Promise.all(
      present.map(async (b) => {
        const fn = needsDetail(b)
          ? await readDetail(reader, b, groupOf.get(b.address), { bars: full || candidates.has(b.address) }).catch((err: unknown) =>
              unreadableDevice(b.address, err, unreadable, logger),
            )
          : { fn: bareFunction(b, groupOf.get(b.address)), consumers: [] as PciAddress[] };
        return fn;
      }),
    )
  ).filter((d): d is Detailed => d !== undefined);
  const functions = detailed.map((d) => d.fn).sort((a, b) => comparePciAddress(a.address, b.address));

  // SR-IOV virtual functions carry the GPU class too; each is handed off on its own (own IOMMU group,
  // `physfn` link to its PF) — that is what SR-IOV users pass through — so they are GPUs here too, and
  // never companions of their PF (findCompanions skips functions with a physfn).
  const isGpu = (fn: PciFunction): boolean => candidates.has(fn.address);
  const gpuFns = functions.filter(isGpu);

  const addressesWithClaims = iomemHasAddresses(iomem);
  const barClaims = addressesWithClaims ? findBarClaims(iomem, gpuFns) : [];
  const framebuffers: Framebuffer[] = fbLinks.map((l) => {
    const type = framebufferTypeOf(l.name) ?? 'other';
    const claim = addressesWithClaims ? findFramebufferClaim(l.name, type, iomem) : undefined;
    const owner = claim ? framebufferOwner(claim.range, gpuFns) : undefined;
    return { device: l.name, type, driver: l.driver, claim: claim?.claim, range: claim?.range, owner, parent: l.parent };
  });

  const byAddress = new Map(detailed.map((d) => [d.fn.address, d] as const));
  const gpus: Gpu[] = gpuFns.map((fn) => {
    const d = byAddress.get(fn.address)!;
    const fbs = framebuffers.filter((f) => f.owner?.address === fn.address || (f.owner === undefined && f.parent === fn.address));
    return {
      fn,
      kind: gpuKindOf(fn.classCode, fn.vendorId)!,
      companions: findCompanions(fn, functions, d.consumers, isGpu),
      // A firmware framebuffer in its BARs makes it the boot display even without boot_vga (class
      // 0x0380/0x0302 display GPUs have no such file, and vfio-pci will not remove it for them).
      isBootGpu:
        fn.bootVga === true ||
        fn.bootDisplay === true ||
        fbs.length > 0 ||
        barClaims.some((c) => c.address === fn.address && c.firmwareFramebuffer),
      framebuffers: fbs.map((f) => f.device),
    };
  });

  return {
    kernel,
    iommuEnabled: groupIds.length > 0,
    vfioPci: { loaded: vfioLoaded, loadable: vfioLoadable },
    iommufd,
    vfioIommuType1: { loaded: type1Loaded, loadable: type1Loadable },
    vfioGroupNodes: devVfio.filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b),
    functions,
    groups,
    gpus,
    framebuffers,
    vtconsoles: vtconsoles.sort((a, b) => compareVtConsoleNames(a.name, b.name)),
    barClaims,
    iomemReadable: addressesWithClaims || iomem.length === 0,
    platform: iommuPlatform(iommuDevices, kernel.release, cpuinfo),
    ...(unreadable.length > 0 ? { unreadable: unreadable.sort((a, b) => comparePciAddress(a.address, b.address)) } : {}),
  };
}

/**
 * The IOMMU family, for advice only: `/sys/class/iommu` names the hardware units (`dmar0` Intel VT-d,
 * `ivhd0` AMD-Vi, `smmu3.0x...`/`arm-smmu...` Arm SMMU); with the IOMMU off that directory is empty, so
 * `/proc/cpuinfo` (x86 `vendor_id`, arm64 `CPU implementer`) and then the kernel release's architecture tag decide (`-arm64`, `aarch64`, `-64k` and Raspberry Pi builds are arm64).
 */
export function iommuPlatform(iommuDevices: readonly string[], release: string | undefined, cpuinfo?: string): IommuPlatform {
  if (iommuDevices.some((n) => /^dmar\d/.test(n))) return 'intel';
  if (iommuDevices.some((n) => /^ivhd\d/.test(n))) return 'amd';
  if (iommuDevices.some((n) => /smmu/i.test(n))) return 'arm-smmu';
  if (cpuinfo !== undefined) {
    if (/^vendor_id\s*:\s*GenuineIntel/m.test(cpuinfo)) return 'intel';
    if (/^vendor_id\s*:\s*(AuthenticAMD|HygonGenuine)/m.test(cpuinfo)) return 'amd';
    if (/^CPU implementer\s*:/m.test(cpuinfo)) return 'arm-smmu';
  }
  if (release !== undefined && /(aarch64|arm64|-64k\b|rpi|raspi|tegra)/i.test(release)) return 'arm-smmu';
  return 'unknown';
}

/**
 * A device whose directory cannot be read (a symlink loop, EIO from a dying device) is reported and
 * left out; the rest of the host is still discovered. Its address stays in its IOMMU group's members,
 * so a verdict on that group sees an unknown member and blocks.
 */
function unreadableDevice(address: PciAddress, err: unknown, into: { address: PciAddress; error: string }[], logger: Logger): undefined {
  if (!(err instanceof HostReadError)) throw err;
  into.push({ address, error: err.message });
  logger.warn({ address, err: err.message }, 'PCI device unreadable; left out');
  return undefined;
}

/** Valid, de-duplicated PCI addresses from a directory listing, sorted; garbage names are ignored. */
function uniqueAddresses(names: readonly string[]): PciAddress[] {
  const out = new Set<PciAddress>();
  for (const n of names) {
    const a = tryParseAddress(n);
    if (a) out.add(a);
  }
  return [...out].sort(comparePciAddress);
}

function tryParseAddress(raw: string): PciAddress | undefined {
  try {
    return parsePciAddress(raw);
  } catch {
    return undefined;
  }
}

function basename(link: string | undefined): string | undefined {
  if (link === undefined) return undefined;
  const parts = link.split('/').filter((p) => p.length > 0);
  return parts[parts.length - 1];
}

async function readBasic(reader: HostReader, address: PciAddress, logger: Logger): Promise<BasicFunction | undefined> {
  const [cls, vendor, device, driverLink] = await Promise.all([
    reader.readText(P.pciAttribute(address, 'class')),
    reader.readText(P.pciAttribute(address, 'vendor')),
    reader.readText(P.pciAttribute(address, 'device')),
    reader.readLink(P.pciAttribute(address, 'driver')),
  ]);
  if (cls === undefined || vendor === undefined || device === undefined) {
    logger.warn({ address }, 'PCI device vanished while being read; left out');
    return undefined;
  }
  const classCode = parseHexNumber(cls);
  let vendorId: string;
  let deviceId: string;
  try {
    vendorId = normaliseHexId(vendor, 4);
    deviceId = normaliseHexId(device, 4);
  } catch {
    logger.warn({ address, vendor, device }, 'unreadable PCI ids; device left out');
    return undefined;
  }
  if (classCode === undefined) {
    logger.warn({ address, class: cls }, 'unreadable PCI class; device left out');
    return undefined;
  }
  return { address, vendorId, deviceId, classCode, driver: basename(driverLink) };
}

function bareFunction(b: BasicFunction, iommuGroup: number | undefined): PciFunction {
  return {
    ...b,
    subsystemVendorId: undefined,
    subsystemDeviceId: undefined,
    driverOverride: undefined,
    iommuGroup,
    numaNode: undefined,
    bootVga: undefined,
    resetMethods: [],
    sriovTotalVfs: undefined,
    sriovNumVfs: undefined,
    physfn: undefined,
    isBridge: isBridgeClass(b.classCode),
    bars: [],
    vfioDevices: [],
  };
}

interface Detailed {
  readonly fn: PciFunction;
  readonly consumers: PciAddress[];
}

/**
 * Reads the rest of a function's attributes. The directory is listed first so that only files that
 * exist are read (a 3D controller has no `boot_vga`, most devices no `sriov_*`), which keeps the
 * read count per GPU low.
 */
async function readDetail(
  reader: HostReader,
  b: BasicFunction,
  iommuGroup: number | undefined,
  want: { bars: boolean },
): Promise<Detailed> {
  const entries = new Set(await reader.list(P.pciDevice(b.address)));
  const text = (name: P.PciDeviceAttribute): Promise<string | undefined> =>
    entries.has(name) ? reader.readText(P.pciAttribute(b.address, name)) : Promise.resolve(undefined);
  const [subVendor, subDevice, override, numa, bootVga, bootDisplay, reset, totalVfs, numVfs, physfn, resource, vfioDev] =
    await Promise.all([
      text('subsystem_vendor'),
      text('subsystem_device'),
      text('driver_override'),
      text('numa_node'),
      text('boot_vga'),
      text('boot_display'),
      text('reset_method'),
      text('sriov_totalvfs'),
      text('sriov_numvfs'),
      entries.has('physfn') ? reader.readLink(P.pciAttribute(b.address, 'physfn')) : Promise.resolve(undefined),
      want.bars ? text('resource') : Promise.resolve(undefined),
      entries.has('vfio-dev') ? reader.list(P.pciAttribute(b.address, 'vfio-dev')) : Promise.resolve([]),
    ]);
  const numaNode = parseDecimal(numa);
  const ovr = override?.trim();
  const fn: PciFunction = {
    ...b,
    subsystemVendorId: tryHexId(subVendor),
    subsystemDeviceId: tryHexId(subDevice),
    driverOverride: ovr === undefined || ovr === '' || ovr === '(null)' ? undefined : ovr,
    iommuGroup,
    numaNode: numaNode === undefined || numaNode < 0 ? undefined : numaNode,
    bootVga: bootVga === undefined ? undefined : bootVga.trim() === '1',
    bootDisplay: bootDisplay === undefined ? undefined : bootDisplay.trim() === '1',
    resetMethods: reset === undefined ? [] : reset.split(/\s+/).filter((m) => m.length > 0),
    sriovTotalVfs: parseDecimal(totalVfs),
    sriovNumVfs: parseDecimal(numVfs),
    physfn: tryParseAddress(basename(physfn) ?? ''),
    isBridge: isBridgeClass(b.classCode),
    bars: resource === undefined ? [] : parseResourceFile(resource),
    vfioDevices: vfioDev.filter((n) => /^vfio\d+$/.test(n)).sort(compareVtConsoleNames),
  };
  const consumers = consumerLinkTargets([...entries], tryParseAddress);
  return { fn, consumers };
}

async function readFramebufferLinks(
  reader: HostReader,
  name: string,
): Promise<{ driver: string | undefined; parent: PciAddress | undefined }> {
  const [driverLink, deviceLink] = await Promise.all([
    reader.readLink(`${P.platformDevice(name)}/driver`),
    reader.readLink(P.platformDevice(name)),
  ]);
  // sysfb parents the platform device to the PCI GPU that owns the framebuffer
  // (`.../devices/pci0000:00/0000:00:02.0/efi-framebuffer.0`); unparented ones sit under `devices/platform`.
  const parts = (deviceLink ?? '').split('/').filter((p) => p.length > 0);
  return { driver: basename(driverLink), parent: tryParseAddress(parts[parts.length - 2] ?? '') };
}

async function readVtConsole(reader: HostReader, name: string): Promise<VtConsole> {
  const [description, bind] = await Promise.all([
    reader.readText(P.vtconsoleFile(name, 'name')),
    reader.readText(P.vtconsoleFile(name, 'bind')),
  ]);
  const desc = (description ?? '').trim();
  return { name, description: desc, bound: bind?.trim() === '1', kind: vtConsoleKind(desc) };
}

/**
 * Per module: whether it can be loaded for the running kernel (`modules.dep`, what modprobe consults, or
 * `modules.builtin` lists it). `undefined` entries are modules known to be loaded already: `true`, and
 * the index is read only when some module is not.
 */
async function modulesAvailable(reader: HostReader, release: string | undefined, modules: readonly (string | undefined)[]): Promise<boolean[]> {
  if (modules.every((m) => m === undefined)) return modules.map(() => true);
  if (release === undefined || !isSafeComponent(release)) return modules.map((m) => m === undefined);
  const [dep, builtin] = await Promise.all([
    reader.readText(P.modulesDep(release)),
    reader.readText(P.modulesBuiltin(release)),
  ]);
  return modules.map((m) => m === undefined || P.isModuleListed(dep ?? '', m) || P.isModuleListed(builtin ?? '', m));
}

function isSafeComponent(name: string): boolean {
  try {
    P.safeComponent(name, 'name');
    return true;
  } catch {
    return false;
  }
}

function parseHexNumber(raw: string): number | undefined {
  const v = raw.trim().toLowerCase();
  if (!/^(0x)?[0-9a-f]+$/.test(v)) return undefined;
  return parseInt(v.replace(/^0x/, ''), 16);
}

function parseDecimal(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const v = raw.trim();
  return /^-?\d+$/.test(v) ? Number(v) : undefined;
}

function tryHexId(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  try {
    return normaliseHexId(raw, 4);
  } catch {
    return undefined;
  }
}
