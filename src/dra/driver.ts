import type { Clock } from '../core/clock.js';
import { BlockedError, HandoffError, InvalidArgumentError, NotFoundError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { parsePciAddress, type PciAddress } from '../core/pci-address.js';
import type { HandoffEngine, HandoffReport } from '../handoff/engine.js';
import { VFIO_DRIVER } from '../handoff/group.js';
import type { HostSnapshot } from '../host/model.js';
import { functionAt } from '../host/lookup.js';
import { notReady } from '../host/readiness.js';
import type { Claim, NodePrepareResourceResponse, NodeUnprepareResourceResponse, PreparedDevice } from './api.js';
import { allocatedDevices, type ClaimSource } from './claim.js';
import type { ClaimCheckpoint, PreparedClaim, PreparedClaimDevice } from './checkpoint.js';
import type { DraFiles } from './files-node.js';
import { claimSpecPath, POD_CLAIM_NAME_ANNOTATION, removeClaimFiles, writeClaimFiles, type MetadataDevice } from './metadata.js';
import { gpuFacts } from '../devices/facts.js';
import type { GpuFacts } from '../devices/model.js';
import { CDI_KIND as GPU_CDI_KIND } from '../devices/names.js';
import { deviceAttributes, deviceName, DRIVER_NAME } from './slice.js';

/** The node's policy for DRA claims (flags of `agent --front-end dra`). */
export interface DraPolicy {
  /** The node allows the boot GPU to be prepared (a claim must still ask with `allowBootGpu: true`). */
  readonly allowBootGpu: boolean;
  /** Leave GPUs on vfio-pci when their claim is unprepared (no rebinding churn on dedicated VM nodes). */
  readonly keepOnVfio: boolean;
}

export type DraOperation = 'prepare' | 'unprepare';
export type DraResult = 'success' | 'error' | 'noop';

export interface DraRecorder {
  /** One claim's prepare/unprepare finished; `noop` = answered from the checkpoint / nothing to undo. */
  claim(operation: DraOperation, result: DraResult, durationSeconds: number): void;
}

export interface DraDriverDeps {
  readonly nodeName: string;
  readonly engine: Pick<HandoffEngine, 'prepare' | 'release' | 'discover'>;
  readonly claims: ClaimSource;
  readonly checkpoint: ClaimCheckpoint;
  readonly policy: DraPolicy;
  /** Host directory for the KEP-5304 metadata files (under the plugin dir). */
  readonly metadataDir: string;
  readonly cdiDir: string;
  readonly files: DraFiles;
  /**
   * The GPU CDI spec (`<cdi-dir>/handoff.dev-gpu.json`, src/cdi CdiSpecWriter): synced after every prepare
   * and unprepare, so the `handoff.dev/gpu=…` IDs we return name devices the runtime finds.
   */
  readonly cdi?: { sync(snapshot: HostSnapshot): Promise<unknown> };
  /** The slice facts of each GPU (pcieRoot, model), so metadata and ResourceSlice agree. */
  readonly facts: (snapshot: HostSnapshot) => Promise<ReadonlyMap<string, GpuFacts>>;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly recorder?: DraRecorder;
  /** A claim failed: the front end turns it into a Warning Event on the claim. */
  readonly onClaimError?: (claim: Claim, operation: DraOperation, reason: string, message: string) => void;
}

const UID = /^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * The DRA driver's node side: prepares claims by running the journaled handoff for the claimed GPUs and
 * unprepares them by giving the GPUs back. One claim's failure is that claim's error, never the call's.
 * Claims are handled one at a time (the engine holds the state lock for a whole change anyway).
 */
export class DraDriver {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: DraDriverDeps) {}

  prepare(claims: readonly Claim[]): Promise<Record<string, NodePrepareResourceResponse>> {
    return this.serial(async () => {
      const out: Record<string, NodePrepareResourceResponse> = {};
      for (const c of claims) out[c.uid] = await this.timed('prepare', c, () => this.prepareOne(c));
      return out;
    });
  }

  unprepare(claims: readonly Claim[]): Promise<Record<string, NodeUnprepareResourceResponse>> {
    return this.serial(async () => {
      const out: Record<string, NodeUnprepareResourceResponse> = {};
      for (const c of claims) {
        const r = await this.timed('unprepare', c, async () => ({ ...(await this.unprepareOne(c)), devices: [] }));
        out[c.uid] = { error: r.error };
      }
      return out;
    });
  }

  /** Claims prepared now (from the checkpoint). */
  async prepared(): Promise<ReadonlyMap<string, PreparedClaim>> {
    return this.deps.checkpoint.load();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async timed(op: DraOperation, claim: Claim, fn: () => Promise<NodePrepareResourceResponse & { noop?: boolean }>): Promise<NodePrepareResourceResponse> {
    const start = this.deps.clock.now();
    let r: NodePrepareResourceResponse & { noop?: boolean };
    try {
      r = await fn();
    } catch (err) {
      const reason = err instanceof HandoffError ? err.code : 'INTERNAL';
      const message = `${op} of ResourceClaim ${claim.namespace}/${claim.name} (${claim.uid}) failed: ${err instanceof Error ? err.message : String(err)}`;
      this.deps.logger.warn({ claim: `${claim.namespace}/${claim.name}`, uid: claim.uid, reason }, message);
      this.deps.onClaimError?.(claim, op, reason, message);
      r = { devices: [], error: message };
    }
    const seconds = (this.deps.clock.now() - start) / 1000;
    this.deps.recorder?.claim(op, r.error ? 'error' : r.noop ? 'noop' : 'success', seconds);
    return { devices: r.devices, error: r.error };
  }

  private async prepareOne(ref: Claim): Promise<NodePrepareResourceResponse & { noop?: boolean }> {
    validateRef(ref);
    const { deps } = this;
    const checkpoint = await deps.checkpoint.load();
    const done = checkpoint.get(ref.uid);
    let previous: PreparedClaim | undefined;
    if (done) {
      // The checkpoint says what we did, not what the host is now: a GPU given back by hand (`vfio-handoff
      // release`) or rebound by another tool would otherwise be reported prepared while a VM cannot use it.
      const now = await deps.engine.discover();
      const lost = done.devices.filter((d) => notReady(now, parsePciAddress(d.address)) !== undefined);
      if (lost.length === 0) return { devices: toWire(done), error: '', noop: true };
      deps.logger.warn(
        { claim: `${ref.namespace}/${ref.name}`, uid: ref.uid, gpus: lost.map((d) => d.address) },
        'a prepared claim\'s GPU is no longer ready for a VM: preparing it again',
      );
      checkpoint.delete(ref.uid);
      previous = done;
    }

    const claim = await deps.claims.get(ref);
    const allocated = allocatedDevices(claim, DRIVER_NAME);
    if (allocated.length === 0) throw new InvalidArgumentError(`the claim's allocation has no device of driver ${DRIVER_NAME}`);
    const foreign = allocated.filter((d) => d.pool !== deps.nodeName);
    if (foreign.length > 0) throw new InvalidArgumentError(`device(s) ${foreign.map((d) => `${d.pool}/${d.device}`).join(', ')} are not in this node's pool ${deps.nodeName}`);

    const snapshot = await deps.engine.discover();
    const byName = new Map(snapshot.gpus.map((g) => [deviceName(g.fn.address), g]));
    const gpus = allocated.map((d) => {
      const gpu = byName.get(d.device);
      if (!gpu) throw new NotFoundError(`device ${d.device} is not a GPU on this node (hot-removed, or not ours)`);
      return { alloc: d, gpu };
    });
    // A GPU another prepared claim holds is not handed over again (the scheduler should never allocate it twice).
    // Nor is a GPU of the same IOMMU group as one (two GPUs behind root ports without ACS): vfio hands a
    // group to one VM, so the second VM could not open it, and that claim's unprepare would give back the
    // group under the first VM's GPU. The scheduler cannot see groups (each GPU is its own device).
    for (const { alloc, gpu } of gpus) {
      for (const other of checkpoint.values()) {
        if (other.devices.some((d) => d.device === alloc.device)) throw new BlockedError(`device ${alloc.device} is prepared for ResourceClaim ${other.namespace}/${other.name} (${other.uid})`, []);
        const group = gpu.fn.iommuGroup;
        const mate = group === undefined ? undefined : other.devices.find((d) => functionAt(snapshot, parsePciAddress(d.address))?.iommuGroup === group);
        if (mate) {
          throw new BlockedError(
            `device ${alloc.device} shares IOMMU group ${group} with device ${mate.device}, prepared for ResourceClaim ${other.namespace}/${other.name} (${other.uid}): vfio hands a group to one VM only`,
            [],
          );
        }
      }
    }
    const boot = gpus.filter((g) => g.gpu.isBootGpu);
    for (const b of boot) {
      if (!b.alloc.config.allowBootGpu) {
        throw new BlockedError(`device ${b.alloc.device} (${b.gpu.fn.address}) is the boot GPU: the claim's GpuConfig must set allowBootGpu: true (its firmware console goes dark)`, []);
      }
      if (!deps.policy.allowBootGpu) {
        throw new BlockedError(`device ${b.alloc.device} (${b.gpu.fn.address}) is the boot GPU and this node's policy does not allow preparing it (agent --allow-boot-gpu)`, []);
      }
    }

    const wasOnVfio = new Map(gpus.map((g) => [g.gpu.fn.address, g.gpu.fn.driver === VFIO_DRIVER]));
    const addresses = [...new Set(gpus.map((g) => g.gpu.fn.address))];
    const report = await deps.engine.prepare({ all: false, selectors: addresses.map((address) => ({ kind: 'address' as const, address })) }, { allowBootGpu: boot.length > 0 });
    const moved = addresses.filter((a) => !wasOnVfio.get(a));
    const failed = report.outcomes.filter((o) => !['prepared', 'already', 'resumed'].includes(o.outcome));
    if (failed.length > 0) {
      await this.undo(moved, report);
      throw new BlockedError(`handoff failed: ${failed.map((o) => `group ${o.group}: ${o.outcome}${o.error ? ` (${o.error.code}: ${o.error.message})` : ''}`).join('; ')}`, []);
    }

    try {
      const after = await deps.engine.discover();
      await deps.cdi?.sync(after);
      const facts = await deps.facts(after);
      const requests = new Map<string, MetadataDevice[]>();
      for (const { alloc, gpu } of gpus) {
        const f = facts.get(gpu.fn.address) ?? gpuFacts(gpu);
        requests.set(alloc.request, [...(requests.get(alloc.request) ?? []), { driver: DRIVER_NAME, pool: alloc.pool, name: alloc.device, attributes: deviceAttributes(f) }]);
      }
      const podClaimName = claim.metadata?.annotations?.[POD_CLAIM_NAME_ANNOTATION];
      const files = await writeClaimFiles({ files: deps.files, metadataDir: deps.metadataDir, cdiDir: deps.cdiDir, driver: DRIVER_NAME, claim: { ...ref, podClaimName }, requests });
      const seen = new Set<string>();
      const devices: PreparedClaimDevice[] = gpus.map(({ alloc, gpu }) => {
        const top = alloc.request.split('/')[0]!;
        const ids = [`${GPU_CDI_KIND}=${alloc.device}`];
        // The metadata mount goes with the request's first device: a container using the request gets it once.
        if (!seen.has(top)) {
          seen.add(top);
          ids.push(files.cdiDeviceIds.get(top)!);
        }
        // Re-prepared after a loss: whether unprepare gives the GPU back is still what the first prepare found.
        const before = previous?.devices.find((d) => d.address === gpu.fn.address)?.releaseOnUnprepare;
        return { request: alloc.request, pool: alloc.pool, device: alloc.device, address: gpu.fn.address, cdiDeviceIds: ids, releaseOnUnprepare: before ?? !wasOnVfio.get(gpu.fn.address) };
      });
      const entry: PreparedClaim = { namespace: ref.namespace, name: ref.name, uid: ref.uid, devices, files: files.files };
      checkpoint.set(ref.uid, entry);
      await deps.checkpoint.save(checkpoint);
      deps.logger.info({ claim: `${ref.namespace}/${ref.name}`, uid: ref.uid, gpus: addresses }, 'claim prepared');
      return { devices: toWire(entry), error: '' };
    } catch (err) {
      await removeClaimFiles(deps.files, [claimSpecPath(deps.cdiDir, ref.uid)], deps.metadataDir, ref.uid).catch(() => undefined);
      await this.undo(moved, report);
      throw err;
    }
  }

  /** Gives back GPUs this claim's prepare moved to vfio-pci (after a later failure), best effort, logged. */
  private async undo(moved: readonly PciAddress[], report: HandoffReport): Promise<void> {
    const prepared = new Set(report.outcomes.filter((o) => o.outcome === 'prepared' || o.outcome === 'resumed').flatMap((o) => o.gpus));
    const back = moved.filter((a) => prepared.has(a));
    if (back.length === 0) return;
    try {
      await this.deps.engine.release({ all: false, selectors: back.map((address) => ({ kind: 'address' as const, address })) });
    } catch (err) {
      this.deps.logger.error({ gpus: back, err: err instanceof Error ? err.message : String(err) }, 'could not give back GPUs after a failed claim prepare');
    }
  }

  private async unprepareOne(ref: Claim): Promise<{ devices: PreparedDevice[]; error: string; noop?: boolean }> {
    validateRef(ref);
    const { deps } = this;
    const checkpoint = await deps.checkpoint.load();
    const entry = checkpoint.get(ref.uid);
    if (!entry) return { devices: [], error: '', noop: true }; // never prepared, or already unprepared
    const others = [...checkpoint.values()].filter((c) => c.uid !== ref.uid);
    const snapshot = await deps.engine.discover();
    const groupOf = (address: string) => functionAt(snapshot, parsePciAddress(address))?.iommuGroup;
    const stillHeld = new Set(others.flatMap((c) => c.devices.map((d) => d.address)));
    // Giving back a GPU releases its whole IOMMU group: not while another claim holds a GPU of that group.
    const heldGroups = new Set(others.flatMap((c) => c.devices.map((d) => groupOf(d.address))).filter((g) => g !== undefined));
    const present = new Set(snapshot.gpus.map((g) => g.fn.address));
    const keep = (address: string) => {
      const group = groupOf(address);
      return stillHeld.has(address) || (group !== undefined && heldGroups.has(group));
    };
    const back = deps.policy.keepOnVfio
      ? []
      : [...new Set(entry.devices.filter((d) => d.releaseOnUnprepare && !keep(d.address) && present.has(d.address as PciAddress)).map((d) => d.address as PciAddress))];
    if (back.length > 0) {
      // The engine refuses (InUseError) while a VMM holds /dev/vfio/<group>: the claim stays prepared and
      // kubelet retries, so a GPU under a running VM is never unbound.
      const report = await deps.engine.release({ all: false, selectors: back.map((address) => ({ kind: 'address' as const, address })) });
      const failed = report.outcomes.filter((o) => !['released', 'already', 'resumed'].includes(o.outcome));
      if (failed.length > 0) throw new BlockedError(`giving the GPU back failed: ${failed.map((o) => `group ${o.group}: ${o.outcome}${o.error ? ` (${o.error.code}: ${o.error.message})` : ''}`).join('; ')}`, []);
    }
    await removeClaimFiles(deps.files, entry.files, deps.metadataDir, ref.uid);
    if (back.length > 0) await deps.cdi?.sync(await deps.engine.discover());
    checkpoint.delete(ref.uid);
    await deps.checkpoint.save(checkpoint);
    deps.logger.info({ claim: `${ref.namespace}/${ref.name}`, uid: ref.uid, released: back }, 'claim unprepared');
    return { devices: [], error: '' };
  }
}

function toWire(c: PreparedClaim): PreparedDevice[] {
  return c.devices.map((d) => ({ request_names: [d.request], pool_name: d.pool, device_name: d.device, cdi_device_ids: [...d.cdiDeviceIds] }));
}

/** kubelet's claim fields become file names (metadata dir, CDI spec): anything but a UID/DNS name is refused. */
function validateRef(ref: Claim): void {
  if (!UID.test(ref.uid)) throw new InvalidArgumentError(`claim UID ${JSON.stringify(ref.uid)} is not a UID`);
  if (!DNS_SUBDOMAIN.test(ref.name) || !DNS_SUBDOMAIN.test(ref.namespace)) throw new InvalidArgumentError(`claim ${JSON.stringify(ref.namespace)}/${JSON.stringify(ref.name)} is not a valid namespace/name`);
}
