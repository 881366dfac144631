import type { PciAddress } from '../core/pci-address.js';
import { pciResourceEnvVar } from '../core/resource-name.js';
import type { Gpu, HostSnapshot } from '../host/model.js';
import { computeSourceDevices } from '../devices/health.js';
import type { Health, NotReadyReason } from '../devices/model.js';
import type { Device } from './api.js';

/**
 * What the plugin advertises: the device source's devices (src/devices: which GPUs, their health) grouped
 * into kubelet extended resources. The device-plugin front end of the one device source.
 */

export { notReadyReason } from '../devices/health.js';
export type { NotReadyReason } from '../devices/model.js';

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
 * The device sets for a new snapshot: the device source's devices (`computeSourceDevices`: ready GPUs,
 * plus GPUs advertised before that still exist, Unhealthy; withdrawn ones Unhealthy) under their
 * resource. A ready GPU whose name changed moves to the new resource (and leaves the old one); one that
 * is no longer ready stays under the resource kubelet knows it by.
 * `resourceOf` names the resource of a GPU (see resources.ts); GPUs it returns `undefined` for are skipped.
 */
export function computeDeviceSets(
  snapshot: HostSnapshot,
  resourceOf: (gpu: Gpu) => string | undefined,
  previous: DeviceSets = new Map(),
  withdrawn: ReadonlySet<string> = new Set(),
): DeviceSets {
  const before = new Map<string, PluginDevice>();
  for (const devices of previous.values()) for (const d of devices) before.set(d.id, d);
  const gpus = new Map(snapshot.gpus.map((g) => [g.fn.address as string, g]));

  const sets = new Map<string, PluginDevice[]>();
  for (const { address, health, reason } of computeSourceDevices(snapshot, new Set(before.keys()), withdrawn)) {
    const gpu = gpus.get(address)!;
    const prior = before.get(address);
    // A ready GPU takes its current name (the cluster may have renamed it); one that is no longer ready
    // stays Unhealthy under the resource kubelet knows it by.
    const resource = reason === undefined ? (resourceOf(gpu) ?? prior?.resource) : (prior?.resource ?? resourceOf(gpu));
    if (resource === undefined) continue;
    const device: PluginDevice = { id: address, resource, health, group: gpu.fn.iommuGroup, numaNode: gpu.fn.numaNode, reason };
    const list = sets.get(resource) ?? [];
    list.push(device);
    sets.set(resource, list);
  }
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

/**
 * Resources that must not be served because another resource on this node maps to the same
 * `PCI_RESOURCE_*` variable (kubelet keeps one value per variable and only logs the clash, so a VM would
 * get the wrong addresses). Per clash the resource already advertised wins (no flapping), else the
 * lexicographically first. Returns dropped → the resource it clashes with. Pure.
 */
export function envVarClashes(resources: Iterable<string>, advertised: ReadonlySet<string>): Map<string, string> {
  const byVar = new Map<string, string[]>();
  for (const r of resources) {
    const v = pciResourceEnvVar(r);
    byVar.set(v, [...(byVar.get(v) ?? []), r]);
  }
  const dropped = new Map<string, string>();
  for (const names of byVar.values()) {
    if (names.length < 2) continue;
    const sorted = [...names].sort();
    const winner = sorted.find((n) => advertised.has(n)) ?? sorted[0]!;
    for (const n of sorted) if (n !== winner) dropped.set(n, winner);
  }
  return dropped;
}
