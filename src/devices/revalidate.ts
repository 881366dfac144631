import type { PciAddress } from '../core/pci-address.js';
import { iomemHasAddresses, parseIomem } from '../host/iomem.js';
import { functionAt, functionMap, groupById } from '../host/lookup.js';
import type { HostSnapshot, IommuGroup } from '../host/model.js';
import { findBarClaims, notReady, type NotReadyReason } from '../host/readiness.js';
import * as P from '../sysfs/paths.js';
import type { HostReader } from '../sysfs/port.js';

const basename = (link: string | undefined): string | undefined => (link === undefined ? undefined : link.slice(link.lastIndexOf('/') + 1));

const groupCache = new WeakMap<HostSnapshot, ReadonlyMap<number, IommuGroup>>();
/** Group by id, built once per snapshot (Allocate runs many times against the same snapshot). */
export function groupIndex(snapshot: HostSnapshot): ReadonlyMap<number, IommuGroup> {
  let idx = groupCache.get(snapshot);
  if (!idx) {
    idx = new Map(snapshot.groups.map((g) => [g.id, g]));
    groupCache.set(snapshot, idx);
  }
  return idx;
}

/**
 * Re-checks, right before Allocate answers, the host facts readiness depends on — for the requested
 * devices only, so Allocate stays cheap: the group's current member list (which also proves the GPU is
 * still in that group), each member's driver link, the presence of `/dev/vfio/<group>` (checked by
 * existence, never opened) and the claims inside the GPU's BARs in `/proc/iomem`. The fresh facts are
 * laid over the snapshot and judged by the one readiness rule (src/host/readiness.ts). Member classes
 * (bridge or not) and BAR ranges come from the snapshot, since they never change while bound.
 * Returns, per device, `undefined` when still ready or the reason it is not.
 */
export async function revalidateDevices(
  reader: HostReader,
  snapshot: HostSnapshot,
  ids: readonly string[],
): Promise<Map<string, NotReadyReason | undefined>> {
  const out = new Map<string, NotReadyReason | undefined>();
  await Promise.all(
    ids.map(async (id) => {
      const fn = functionAt(snapshot, id);
      const group = fn?.iommuGroup;
      if (!fn || group === undefined) return; // unknown or group-less: the snapshot check rejects it
      const expected = groupById(snapshot, group)?.members ?? [fn.address];
      const [members, node, iomem, ...drivers] = await Promise.all([
        reader.list(P.iommuGroupDevices(group)),
        reader.exists(P.vfioGroupNode(group)),
        reader.readText(P.PROC_IOMEM),
        ...expected.map((a) => reader.readLink(P.pciAttribute(a, 'driver'))),
      ]);
      const liveDriver = new Map(expected.map((a, i) => [a as string, basename(drivers[i] as string | undefined)]));
      const liveMembers = (members as string[]).filter((m) => m !== '').sort() as PciAddress[];
      const entries = parseIomem((iomem as string | undefined) ?? '');
      const readable = iomemHasAddresses(entries);
      const live: HostSnapshot = {
        ...snapshot,
        functions: [...functionMap(snapshot).values()].map((f) => {
          if (!liveDriver.has(f.address)) return f;
          const inGroup = f.address !== fn.address || liveMembers.includes(f.address);
          return { ...f, driver: liveDriver.get(f.address), iommuGroup: inGroup ? f.iommuGroup : undefined };
        }),
        groups: snapshot.groups.map((g) => (g.id === group ? { id: group, members: liveMembers } : g)),
        vfioGroupNodes: node ? [...new Set([...snapshot.vfioGroupNodes, group])] : snapshot.vfioGroupNodes.filter((g) => g !== group),
        barClaims: readable ? findBarClaims(entries, [fn]) : snapshot.barClaims,
        iomemReadable: readable ? true : snapshot.iomemReadable,
      };
      out.set(id, notReady(live, fn.address)?.reason);
    }),
  );
  return out;
}
