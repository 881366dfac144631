import type { PciAddress } from '../core/pci-address.js';
import type { Gpu, HostSnapshot } from '../host/model.js';
import { notReady } from '../host/readiness.js';
import { HEALTHY, UNHEALTHY } from './model.js';
import type { NotReadyReason, SourceDevice } from './model.js';

/**
 * Which GPUs this node offers and their health, derived purely from a HostSnapshot. Health is decided
 * from sysfs/devfs state only: `/dev/vfio/<group>` is never opened, because a VFIO group node allows one
 * open at a time and probing it would race the VM that holds it.
 */

/**
 * `undefined` when the GPU can be handed to a VM now, else the first failing condition — the host
 * model's one readiness rule (src/host/readiness.ts), so a GPU whose BAR a firmware framebuffer still
 * claims is never offered Healthy.
 */
export function notReadyReason(snapshot: HostSnapshot, gpu: Gpu): NotReadyReason | undefined {
  return notReady(snapshot, gpu.fn.address)?.reason;
}

/** How a front end judges one GPU: `undefined` = offer it Healthy, else why not. Default: `notReadyReason`. */
export type Readiness = (snapshot: HostSnapshot, gpu: Gpu) => NotReadyReason | undefined;

/**
 * The devices to offer for a new snapshot, sorted by address. A GPU is offered when `readiness` passes; a
 * GPU offered before (`previous`) stays offered, Unhealthy, while it still exists but no longer passes,
 * so the consumer (kubelet's capacity, a ResourceSlice) keeps it and stops scheduling onto it. A GPU gone
 * from the host vanishes. `withdrawn` GPUs (on their way back to the host) are Unhealthy (`WITHDRAWN`).
 * Pure.
 */
export function computeSourceDevices(
  snapshot: HostSnapshot,
  previous: ReadonlySet<string> = new Set(),
  withdrawn: ReadonlySet<string> = new Set(),
  readiness: Readiness = notReadyReason,
): SourceDevice[] {
  const out: SourceDevice[] = [];
  for (const gpu of snapshot.gpus) {
    const address: PciAddress = gpu.fn.address;
    const reason = readiness(snapshot, gpu) ?? (withdrawn.has(address) ? 'WITHDRAWN' : undefined);
    if (reason !== undefined && !previous.has(address)) continue;
    out.push({ address, health: reason === undefined ? HEALTHY : UNHEALTHY, reason });
  }
  return out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}
