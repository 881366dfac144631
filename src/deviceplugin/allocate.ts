import { InvalidArgumentError } from '../core/errors.js';
import type { HostSnapshot } from '../host/model.js';
import { neutralAllocation, pciResourceEnv, type FreshReadiness } from '../devices/allocation.js';
import type { ContainerAllocateResponse, DeviceSpec } from './api.js';
import type { PluginDevice } from './devices.js';

/**
 * Allocate, as a pure function of the freshest host state we have. kubelet checkpoints the response and
 * replays it on every container restart without asking again (protocol.md §2.5), so everything in it —
 * device nodes and the env value — must stay valid for the pod's lifetime: addresses and group numbers
 * are stable while the GPU stays on vfio-pci.
 */

const PERMISSIONS = 'mrw';

const spec = (path: string): DeviceSpec => ({ container_path: path, host_path: path, permissions: PERMISSIONS });

export type { FreshReadiness } from '../devices/allocation.js';

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
 * One ContainerAllocateResponse for one container request: the device source's neutral allocation
 * (src/devices/allocation.ts) in kubelet's wire shape.
 * - unknown IDs (not advertised under `resource`) and duplicates → `InvalidArgumentError`;
 * - a device that is no longer ready → `BlockedError` (reason codes in `reasons`).
 * DeviceSpecs: `/dev/vfio/vfio` + `/dev/vfio/<group>` per group (deduplicated, request order); with
 * iommufd also `/dev/iommu` + `/dev/vfio/devices/vfioN` for every vfio-bound function of those groups.
 * Env `PCI_RESOURCE_<RESOURCE>` = the requested GPU addresses only, in request order: KubeVirt pops them
 * positionally, so an audio sibling in the list would be taken for the next GPU (protocol.md §3.2).
 * With `opts.cdi` the devices go as CDI device IDs (`handoff.dev/gpu=gpu-…`, the spec src/cdi writes)
 * instead of DeviceSpecs, so the runtime injects them from the CDI spec and nothing is injected twice.
 */
export function buildContainerAllocateResponse(
  snapshot: HostSnapshot,
  resource: string,
  advertised: readonly PluginDevice[],
  deviceIds: readonly string[],
  fresh: FreshReadiness = new Map(),
  opts: { readonly cdi?: boolean } = {},
): ContainerAllocateResponse {
  if (deviceIds.length === 0) throw new InvalidArgumentError(`allocate for ${resource}: the container request lists no devices`);
  const allocation = neutralAllocation(snapshot, {
    addresses: deviceIds,
    offered: new Set<string>(advertised.map((d) => d.id)),
    fresh,
    context: `allocate for ${resource}`,
  });
  return {
    envs: pciResourceEnv(resource, allocation.addresses),
    mounts: [],
    devices: opts.cdi ? [] : allocation.deviceNodes.map(spec),
    annotations: {},
    cdi_devices: opts.cdi ? allocation.cdiDevices.map((name) => ({ name })) : [],
  };
}
