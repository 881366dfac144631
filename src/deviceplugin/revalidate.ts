import type { PciAddress } from '../core/pci-address.js';
import type { HostSnapshot } from '../host/model.js';
import * as P from '../sysfs/paths.js';
import type { HostReader } from '../sysfs/port.js';
import type { NotReadyReason } from './devices.js';

const basename = (link: string | undefined): string | undefined => (link === undefined ? undefined : link.slice(link.lastIndexOf('/') + 1));

/**
 * Re-checks, right before Allocate answers, the few host facts the answer depends on — for the requested
 * devices only, so Allocate stays cheap: the GPU's driver link and IOMMU group, the group's current member
 * list and each member's driver, and the presence of `/dev/vfio/<group>` (checked by existence, never
 * opened). Member classes (bridge or not) come from the snapshot, since a class never changes.
 * Returns, per device, `undefined` when still ready or the reason it is not.
 */
export async function revalidateDevices(
  reader: HostReader,
  snapshot: HostSnapshot,
  ids: readonly string[],
): Promise<Map<string, NotReadyReason | undefined>> {
  const fns = new Map(snapshot.functions.map((f) => [f.address as string, f]));
  const out = new Map<string, NotReadyReason | undefined>();
  await Promise.all(
    ids.map(async (id) => {
      const fn = fns.get(id);
      if (!fn) return; // unknown: the caller rejects it from the snapshot
      const addr = fn.address;
      const [driver, groupLink] = await Promise.all([
        reader.readLink(P.pciAttribute(addr, 'driver')),
        reader.readLink(P.pciAttribute(addr, 'iommu_group')),
      ]);
      if (basename(driver) !== 'vfio-pci') return void out.set(id, 'NOT_ON_VFIO_PCI');
      const group = Number(basename(groupLink));
      if (groupLink === undefined || !Number.isSafeInteger(group) || group !== fn.iommuGroup) return void out.set(id, 'NO_IOMMU_GROUP');
      const [members, node] = await Promise.all([reader.list(P.iommuGroupDevices(group)), reader.exists(P.vfioGroupNode(group))]);
      const drivers = await Promise.all(
        members.map(async (m) => {
          const member = fns.get(m);
          if (!member) return 'unknown-member';
          if (member.isBridge) return undefined;
          return basename(await reader.readLink(P.pciAttribute(member.address as PciAddress, 'driver')));
        }),
      );
      if (drivers.some((d) => d !== undefined && d !== 'vfio-pci' && d !== 'pci-stub')) return void out.set(id, 'GROUP_NOT_VIABLE');
      out.set(id, node ? undefined : 'NO_VFIO_GROUP_NODE');
    }),
  );
  return out;
}
