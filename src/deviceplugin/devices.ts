import type { PciAddress } from '../core/pci-address.js';
import { notReady, type NotReadyReason } from '../host/readiness.js';
import type { Gpu, HostSnapshot } from '../host/model.js';
import { HEALTHY, UNHEALTHY } from './api.js';
import type { Device, Health } from './api.js';

/**
 * What the plugin advertises, derived purely from a HostSnapshot (the engine's read model — no second
 * discovery). Health is decided from sysfs/devfs state only: `/dev/vfio/<group>` is never opened, because
 * a VFIO group node allows one open at a time and probing it would race the VM that holds it.
 */

export type { NotReadyReason };

export interface PluginDevice {
  readonly id: PciAddress; // Device.ID = the GPU's PCI address
  readonly resource: string;
  readonly health: Health;
  readonly group: number | undefined;
  readonly numaNode: number | undefined;
  /** Why the device is Unhealthy (for logs and status); `undefined` when Healthy. */
  readonly reason: NotReadyReason | undefined;
}

/** resource name → devices sorted by address. */
export type DeviceSets = ReadonlyMap<string, readonly PluginDevice[]>;

/**
 * `undefined` when the GPU can be handed to a VM now, else the first failing condition — the host
 * model's one readiness rule (src/host/readiness.ts), so a GPU whose BAR a firmware framebuffer still
 * claims is never advertised Healthy.
 */
export function notReadyReason(snapshot: HostSnapshot, gpu: Gpu): NotReadyReason | undefined {
  return notReady(snapshot, gpu.fn.address)?.reason;
}

/**
 * The device sets for a new snapshot. A GPU is advertised when it is ready; a GPU that was advertised
 * before stays advertised (Unhealthy, under its previous resource) while it still exists but is no longer
 * ready, so kubelet keeps it in capacity and stops scheduling onto it. A GPU gone from the host vanishes.
 * A ready GPU whose name changed moves to the new resource (and leaves the old one).
 * `resourceOf` names the resource of a GPU (see resources.ts); GPUs it returns `undefined` for are skipped.
 */
export function computeDeviceSets(
  snapshot: HostSnapshot,
  resourceOf: (gpu: Gpu) => string | undefined,
  previous: DeviceSets = new Map(),
): DeviceSets {
  const before = new Map<string, PluginDevice>();
  for (const devices of previous.values()) for (const d of devices) before.set(d.id, d);

  const sets = new Map<string, PluginDevice[]>();
  for (const gpu of snapshot.gpus) {
    const reason = notReadyReason(snapshot, gpu);
    const prior = before.get(gpu.fn.address);
    if (reason !== undefined && !prior) continue;
    // A ready GPU takes its current name (the cluster may have renamed it); one that is no longer ready
    // stays Unhealthy under the resource kubelet knows it by.
    const resource = reason === undefined ? (resourceOf(gpu) ?? prior?.resource) : (prior?.resource ?? resourceOf(gpu));
    if (resource === undefined) continue;
    const device: PluginDevice = {
      id: gpu.fn.address,
      resource,
      health: reason === undefined ? HEALTHY : UNHEALTHY,
      group: gpu.fn.iommuGroup,
      numaNode: gpu.fn.numaNode,
      reason,
    };
    const list = sets.get(resource) ?? [];
    list.push(device);
    sets.set(resource, list);
  }
  for (const list of sets.values()) list.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return sets;
}

/** The wire form of one device; NUMA topology only when sysfs knows the node (kubelet: nil = no affinity). */
export function toWireDevice(d: PluginDevice): Device {
  return d.numaNode === undefined
    ? { ID: d.id, health: d.health }
    : { ID: d.id, health: d.health, topology: { nodes: [{ ID: d.numaNode }] } };
}

function sameList(a: readonly PluginDevice[], b: readonly PluginDevice[]): boolean {
  return a.length === b.length && a.every((d, i) => d.id === b[i]!.id && d.health === b[i]!.health && d.numaNode === b[i]!.numaNode);
}

export interface DeviceSetsDiff {
  readonly added: readonly string[]; // resources that appeared
  readonly removed: readonly string[]; // resources with no device left
  readonly changed: readonly string[]; // resources whose list (ids, health, topology) changed
}

/** Which resources need a start, a stop or a ListAndWatch push; kubelet is only told about real changes. */
export function diffDeviceSets(previous: DeviceSets, next: DeviceSets): DeviceSetsDiff {
  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  for (const [resource, list] of next) {
    const old = previous.get(resource);
    if (!old) added.push(resource);
    else if (!sameList(old, list)) changed.push(resource);
  }
  for (const resource of previous.keys()) if (!next.has(resource)) removed.push(resource);
  return { added: added.sort(), removed: removed.sort(), changed: changed.sort() };
}
