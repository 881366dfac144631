import type { PciAddress } from '../core/pci-address.js';
import { functionIndex } from '../handoff/group.js';
import type { HostSnapshot, IommuGroup, PciFunction } from '../host/model.js';
import * as P from '../sysfs/paths.js';
import type { HostReader } from '../sysfs/port.js';
import type { NotReadyReason } from './devices.js';

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
 * Re-checks, right before Allocate answers, the few host facts the answer depends on — for the requested
 * devices only, so Allocate stays cheap: the group's current member list (which also proves the GPU is
 * still in that group), each member's driver link, and the presence of `/dev/vfio/<group>` (checked by
 * existence, never opened). All reads of a device run concurrently. Member classes (bridge or not) come
 * from the snapshot, since a class never changes.
 * Returns, per device, `undefined` when still ready or the reason it is not.
 */
export async function revalidateDevices(
  reader: HostReader,
  snapshot: HostSnapshot,
  ids: readonly string[],
): Promise<Map<string, NotReadyReason | undefined>> {
  const fns = functionIndex(snapshot) as ReadonlyMap<string, PciFunction>;
  const groups = groupIndex(snapshot);
  const out = new Map<string, NotReadyReason | undefined>();
  await Promise.all(
    ids.map(async (id) => {
      const fn = fns.get(id);
      const group = fn?.iommuGroup;
      if (!fn || group === undefined) return; // unknown or group-less: the snapshot check rejects it
      const expected = groups.get(group)?.members ?? [fn.address];
      const endpoints = expected.filter((a) => !fns.get(a)?.isBridge);
      const [members, node, ...drivers] = await Promise.all([
        reader.list(P.iommuGroupDevices(group)),
        reader.exists(P.vfioGroupNode(group)),
        ...endpoints.map((a) => reader.readLink(P.pciAttribute(a as PciAddress, 'driver'))),
      ]);
      const driverOf = new Map(endpoints.map((a, i) => [a as string, basename(drivers[i] as string | undefined)]));
      if (driverOf.get(id) !== 'vfio-pci') return void out.set(id, 'NOT_ON_VFIO_PCI');
      if (!(members as string[]).includes(id)) return void out.set(id, 'NO_IOMMU_GROUP');
      // A member that appeared since the snapshot is unknown to us, hence not known to be safe.
      const changed = (members as string[]).length !== expected.length || (members as string[]).some((m) => !fns.has(m));
      const unsafe = [...driverOf.values()].some((d) => d !== undefined && d !== 'vfio-pci' && d !== 'pci-stub');
      if (changed || unsafe) return void out.set(id, 'GROUP_NOT_VIABLE');
      out.set(id, node ? undefined : 'NO_VFIO_GROUP_NODE');
    }),
  );
  return out;
}
