import type { PciAddress } from '../core/pci-address.js';
import { parseIomem } from '../host/iomem.js';
import type { HostSnapshot } from '../host/model.js';
import { findBarClaims } from '../host/readiness.js';
import * as P from '../sysfs/paths.js';
import type { HostReader } from '../sysfs/port.js';

/**
 * A cheap answer to "could the device sets have changed since this snapshot?", so the periodic poll
 * can run every 500 ms without a full discovery each time (a full pass reads hundreds of sysfs files).
 * It covers everything readiness depends on: the set of PCI functions (hot-add/remove), the IOMMU
 * group list, the `/dev/vfio` entries, the driver link and group membership of every function in
 * a GPU's group, the claims inside GPU BARs in `/proc/iomem` and the framebuffer drivers (a firmware
 * framebuffer released or bound changes readiness). Equal fingerprints mean a rescan would produce the same device sets; any difference
 * (or an error) means "rescan". It reads the host through the same port as discovery and never opens
 * a device node.
 */
export async function hostFingerprint(reader: HostReader, snapshot: HostSnapshot): Promise<string> {
  const groups = [...new Set(snapshot.gpus.map((g) => g.fn.iommuGroup).filter((g): g is number => g !== undefined))].sort((a, b) => a - b);
  const watched = new Set<PciAddress>(snapshot.gpus.map((g) => g.fn.address));
  for (const g of snapshot.groups) if (groups.includes(g.id)) for (const m of g.members) watched.add(m);
  const addrs = [...watched].sort();
  const fbs = snapshot.framebuffers.map((f) => f.device);
  const [functions, groupDirs, vfio, iomem, fbDrivers, ...rest] = await Promise.all([
    reader.list(P.PCI_DEVICES),
    reader.list(P.IOMMU_GROUPS),
    reader.list(P.DEV_VFIO),
    reader.readText(P.PROC_IOMEM),
    Promise.all(fbs.map((d) => reader.readLink(`${P.platformDevice(d)}/driver`))),
    ...groups.map((g) => reader.list(P.iommuGroupDevices(g))),
    ...addrs.map((a) => reader.readLink(P.pciAttribute(a, 'driver'))),
  ]);
  const members = rest.slice(0, groups.length) as string[][];
  const claims = findBarClaims(parseIomem((iomem as string | undefined) ?? ''), snapshot.gpus.map((g) => g.fn));
  const drivers = rest.slice(groups.length) as (string | undefined)[];
  return JSON.stringify([
    functions,
    groupDirs,
    vfio,
    groups.map((g, i) => [g, members[i]]),
    addrs.map((a, i) => [a, drivers[i]?.slice(drivers[i]!.lastIndexOf('/') + 1)]),
    claims.map((c) => `${c.address}/${c.bar}/${c.name}`),
    fbs.map((d, i) => [d, (fbDrivers as (string | undefined)[])[i]]),
  ]);
}
