import { BlockedError, InvalidArgumentError } from '../core/errors.js';
import type { PciAddress } from '../core/pci-address.js';
import { pciResourceEnvVar } from '../core/resource-name.js';
import { functionIndex } from '../handoff/group.js';
import type { Gpu, HostSnapshot } from '../host/model.js';
import { notReadyReason } from './health.js';
import type { NeutralAllocation, NotReadyReason } from './model.js';
import { cdiDeviceId } from './names.js';
import { groupIndex } from './revalidate.js';

/**
 * The neutral allocation (see `NeutralAllocation`), as a pure function of the freshest host state we have.
 * Both front ends hand it out once and the consumer keeps it (kubelet checkpoints an Allocate response and
 * replays it on every container restart, protocol.md §2.5; a prepared DRA claim stays prepared), so
 * everything in it must stay valid for the pod's lifetime: addresses, group numbers and vfio cdev names
 * are stable while the GPU stays on vfio-pci.
 */

export const VFIO_CONTAINER_NODE = '/dev/vfio/vfio';
export const IOMMUFD_NODE = '/dev/iommu';

/** Fresh per-device answers (see revalidate.ts) that override the snapshot's view of readiness. */
export type FreshReadiness = ReadonlyMap<string, NotReadyReason | undefined>;

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
 * Device nodes for `groups` (host path = container path): `/dev/vfio/vfio`, `/dev/vfio/<group>` per group
 * and, when the host has iommufd (`/dev/iommu`), `/dev/iommu` and `/dev/vfio/devices/vfioN` of every
 * vfio-pci-bound function of those groups (a VMM using the cdev path opens those instead of the group).
 * Deduplicated, in group order. Pure.
 */
export function groupDeviceNodes(snapshot: HostSnapshot, groups: readonly number[]): string[] {
  const nodes: string[] = [VFIO_CONTAINER_NODE, ...groups.map((g) => `/dev/vfio/${g}`)];
  if (snapshot.iommufd) {
    const fns = functionIndex(snapshot);
    nodes.push(IOMMUFD_NODE);
    for (const g of groups) {
      for (const member of groupIndex(snapshot).get(g)?.members ?? []) {
        const fn = fns.get(member);
        if (fn?.driver !== 'vfio-pci') continue;
        for (const cdev of fn.vfioDevices) nodes.push(`/dev/vfio/devices/${cdev}`);
      }
    }
  }
  return [...new Set(nodes)];
}

export interface AllocationRequest {
  /** The GPUs asked for, in request order. */
  readonly addresses: readonly string[];
  /** The GPUs the front end offers (anything else is refused as unknown). */
  readonly offered: ReadonlySet<string>;
  /** Fresh readiness for some of them (read right before answering); the snapshot decides the rest. */
  readonly fresh?: FreshReadiness;
  /** Prefix of error messages, e.g. `allocate for nvidia.com/GA102`. */
  readonly context: string;
}

/**
 * The neutral allocation of `req.addresses`.
 * - no address, an address not offered or not a GPU of the snapshot, or one twice → `InvalidArgumentError`;
 * - a GPU that is not ready (fresh answer first, else the snapshot) → `BlockedError`, one reason per GPU
 *   (`code` = the NotReadyReason).
 */
export function neutralAllocation(snapshot: HostSnapshot, req: AllocationRequest): NeutralAllocation {
  const { context, offered } = req;
  const fresh = req.fresh ?? new Map();
  if (req.addresses.length === 0) throw new InvalidArgumentError(`${context}: the request lists no devices`);
  const gpus = gpuIndex(snapshot);
  const seen = new Set<string>();
  const groups: number[] = [];
  const addresses: PciAddress[] = [];
  const blocked: { code: string; message: string }[] = [];
  for (const id of req.addresses) {
    if (seen.has(id)) throw new InvalidArgumentError(`${context}: device ${id} is requested twice`);
    seen.add(id);
    const gpu = gpus.get(id);
    if (!offered.has(id) || !gpu) {
      throw new InvalidArgumentError(`${context}: unknown device ${JSON.stringify(id)} (not a device this plugin advertises)`);
    }
    const reason = fresh.has(id) ? fresh.get(id) : notReadyReason(snapshot, gpu);
    if (reason !== undefined) {
      blocked.push({ code: reason, message: `device ${id} is no longer ready for passthrough (${reason})` });
      continue;
    }
    addresses.push(gpu.fn.address);
    const group = gpu.fn.iommuGroup!;
    if (!groups.includes(group)) groups.push(group);
  }
  if (blocked.length > 0) throw new BlockedError(`${context}: ${blocked.map((b) => b.message).join('; ')}`, blocked);
  return { addresses, groups, deviceNodes: groupDeviceNodes(snapshot, groups), cdiDevices: addresses.map(cdiDeviceId) };
}

/**
 * KubeVirt's env for device-plugin GPUs: `PCI_RESOURCE_<RESOURCE>` = the GPU addresses only, in request
 * order. KubeVirt pops them positionally, so an audio sibling in the list would be taken for the next GPU
 * (protocol.md §3.2).
 */
export function pciResourceEnv(resource: string, addresses: readonly string[]): Record<string, string> {
  return { [pciResourceEnvVar(resource)]: addresses.join(',') };
}
