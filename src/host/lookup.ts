import type { PciAddress } from '../core/pci-address.js';
import type { Gpu, HostSnapshot, IommuGroup, PciFunction } from './model.js';

/**
 * Lookups on a HostSnapshot, indexed once per snapshot (snapshots are immutable, so a WeakMap cache
 * keyed by the snapshot is always current). Everything that asks "which function is at X / which
 * group is N" goes through here.
 */
interface Index {
  readonly functions: Map<PciAddress, PciFunction>;
  readonly groups: Map<number, IommuGroup>;
  readonly gpus: Map<string, Gpu>;
}

const cache = new WeakMap<HostSnapshot, Index>();

function index(snapshot: HostSnapshot): Index {
  let idx = cache.get(snapshot);
  if (!idx) {
    idx = {
      functions: new Map(snapshot.functions.map((f) => [f.address, f])),
      groups: new Map(snapshot.groups.map((g) => [g.id, g])),
      gpus: new Map(snapshot.gpus.map((g) => [g.fn.address, g])),
    };
    cache.set(snapshot, idx);
  }
  return idx;
}

export function functionAt(snapshot: HostSnapshot, address: string): PciFunction | undefined {
  return index(snapshot).functions.get(address as PciAddress);
}

export function gpuAt(snapshot: HostSnapshot, address: string): Gpu | undefined {
  return index(snapshot).gpus.get(address);
}

export function groupById(snapshot: HostSnapshot, id: number | undefined): IommuGroup | undefined {
  return id === undefined ? undefined : index(snapshot).groups.get(id);
}

/** Every function by address (the map is shared; do not modify it). */
export function functionMap(snapshot: HostSnapshot): ReadonlyMap<PciAddress, PciFunction> {
  return index(snapshot).functions;
}
