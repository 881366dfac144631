import { BlockedError, InvalidArgumentError } from '../core/errors.js';
import { functionIndex } from '../handoff/group.js';
import type { Gpu, HostSnapshot } from '../host/model.js';
import type { ContainerAllocateResponse, DeviceSpec } from './api.js';
import { notReadyReason } from './devices.js';
import type { NotReadyReason, PluginDevice } from './devices.js';
import { pciResourceEnvVar } from './resources.js';
import { groupIndex } from './revalidate.js';

const gpuCache = new WeakMap<HostSnapshot, ReadonlyMap<string, Gpu>>();
function gpuIndex(snapshot: HostSnapshot): ReadonlyMap<string, Gpu> {
  let idx = gpuCache.get(snapshot);
  if (!idx) {
    idx = new Map(snapshot.gpus.map((g) => [g.fn.address as string, g]));
    gpuCache.set(snapshot, idx);
  }
  return idx;
}

/**
 * Allocate, as a pure function of the freshest host state we have. kubelet checkpoints the response and
 * replays it on every container restart without asking again (protocol.md §2.5), so everything in it —
 * device nodes and the env value — must stay valid for the pod's lifetime: addresses and group numbers
 * are stable while the GPU stays on vfio-pci.
 */

const VFIO_CONTAINER = '/dev/vfio/vfio';
const IOMMUFD = '/dev/iommu';
const PERMISSIONS = 'mrw';

const spec = (path: string): DeviceSpec => ({ container_path: path, host_path: path, permissions: PERMISSIONS });

/** Fresh per-device answers (see revalidate.ts) that override the snapshot's view of readiness. */
export type FreshReadiness = ReadonlyMap<string, NotReadyReason | undefined>;

/**
 * Cheap checks of a whole AllocateRequest before any host read, stopping at the first problem so a
 * hostile request costs O(advertised devices) at most: no more IDs than devices advertised, every ID
 * advertised, and no device twice — within a container request or across two of them (one device
 * cannot go to two containers). `InvalidArgumentError` names the problem.
 */
export function checkAllocateRequest(resource: string, advertised: readonly PluginDevice[], containers: readonly { readonly devices_ids: readonly string[] }[]): void {
  const known = new Set<string>(advertised.map((d) => d.id));
  const seen = new Set<string>();
  for (const c of containers) {
    for (const id of c.devices_ids) {
      if (seen.size >= known.size) {
        throw new InvalidArgumentError(`allocate for ${resource}: more device IDs requested than the ${known.size} this plugin advertises`);
      }
      if (seen.has(id)) throw new InvalidArgumentError(`allocate for ${resource}: device ${id} is requested twice`);
      if (!known.has(id)) throw new InvalidArgumentError(`allocate for ${resource}: unknown device ${JSON.stringify(id.slice(0, 64))} (not a device this plugin advertises)`);
      seen.add(id);
    }
  }
}

/**
 * One ContainerAllocateResponse for one container request.
 * - unknown IDs (not advertised under `resource`) and duplicates → `InvalidArgumentError`;
 * - a device that is no longer ready → `BlockedError` (reason codes in `reasons`).
 * DeviceSpecs: `/dev/vfio/vfio` + `/dev/vfio/<group>` per group (deduplicated, request order); with
 * iommufd also `/dev/iommu` + `/dev/vfio/devices/vfioN` for every vfio-bound function of those groups.
 * Env `PCI_RESOURCE_<RESOURCE>` = the requested GPU addresses only, in request order: KubeVirt pops them
 * positionally, so an audio sibling in the list would be taken for the next GPU (protocol.md §3.2).
 */
export function buildContainerAllocateResponse(
  snapshot: HostSnapshot,
  resource: string,
  advertised: readonly PluginDevice[],
  deviceIds: readonly string[],
  fresh: FreshReadiness = new Map(),
): ContainerAllocateResponse {
  if (deviceIds.length === 0) throw new InvalidArgumentError(`allocate for ${resource}: the container request lists no devices`);
  const known = new Set<string>(advertised.map((d) => d.id));
  const gpus = gpuIndex(snapshot);
  const seen = new Set<string>();
  const groups: number[] = [];
  const blocked: { code: string; message: string }[] = [];
  for (const id of deviceIds) {
    if (seen.has(id)) throw new InvalidArgumentError(`allocate for ${resource}: device ${id} is requested twice`);
    seen.add(id);
    const gpu = gpus.get(id);
    if (!known.has(id) || !gpu) {
      throw new InvalidArgumentError(`allocate for ${resource}: unknown device ${JSON.stringify(id)} (not a device this plugin advertises)`);
    }
    const reason = fresh.has(id) ? fresh.get(id) : notReadyReason(snapshot, gpu);
    if (reason !== undefined) {
      blocked.push({ code: reason, message: `device ${id} is no longer ready for passthrough (${reason})` });
      continue;
    }
    const group = gpu.fn.iommuGroup!;
    if (!groups.includes(group)) groups.push(group);
  }
  if (blocked.length > 0) {
    throw new BlockedError(`allocate for ${resource}: ${blocked.map((b) => b.message).join('; ')}`, blocked);
  }

  const devices: DeviceSpec[] = [spec(VFIO_CONTAINER), ...groups.map((g) => spec(`/dev/vfio/${g}`))];
  if (snapshot.iommufd) {
    const fns = functionIndex(snapshot);
    devices.push(spec(IOMMUFD));
    for (const g of groups) {
      for (const member of groupIndex(snapshot).get(g)?.members ?? []) {
        const fn = fns.get(member);
        if (fn?.driver !== 'vfio-pci') continue;
        for (const cdev of fn.vfioDevices) devices.push(spec(`/dev/vfio/devices/${cdev}`));
      }
    }
  }
  const unique = devices.filter((d, i) => devices.findIndex((x) => x.host_path === d.host_path) === i);
  return {
    envs: { [pciResourceEnvVar(resource)]: deviceIds.join(',') },
    mounts: [],
    devices: unique,
    annotations: {},
    cdi_devices: [],
  };
}
