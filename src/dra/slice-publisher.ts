import type { Clock } from '../core/clock.js';
import { ConflictError, NotFoundError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { HostSnapshot } from '../host/model.js';
import { AlreadyExistsError, CoreResources, type KubeApi } from '../kube/port.js';
import { jitteredBackoff } from '../kube/watch-restarts.js';
import { deepEqual } from '../operator/canonical.js';
import type { DraFiles } from './files-node.js';
import type { GpuFacts } from '../devices/model.js';
import { RESOURCE_SLICES, resourceSlice, sliceDevices, sliceName, type ResourceSlice, type SliceDevice } from './slice.js';

/** Where the node's ResourceSlice goes: the API server, or a file when running without one. */
export interface SliceSink {
  /** Makes the stored slice carry `devices`; bumps the pool generation when they changed. Returns the generation stored. */
  apply(nodeName: string, devices: readonly SliceDevice[]): Promise<number>;
}

/**
 * The API server sink: one ResourceSlice named `<node>-gpu.handoff.dev`, owned by the Node (so it goes
 * with it), replaced with optimistic concurrency. A changed device list bumps `spec.pool.generation`: the
 * scheduler ignores slices of an older generation of the pool.
 */
export class KubeSliceSink implements SliceSink {
  constructor(private readonly kube: Pick<KubeApi, 'get' | 'create' | 'replace'>) {}

  async apply(nodeName: string, devices: readonly SliceDevice[]): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const existing = await this.kube.get<ResourceSlice>(RESOURCE_SLICES, sliceName(nodeName)).catch((err: unknown) => {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      });
      if (existing && existing.spec?.nodeName === nodeName && deepEqual(existing.spec.devices ?? [], devices)) return existing.spec.pool.generation;
      const generation = (existing?.spec?.pool?.generation ?? 0) + 1;
      const slice = resourceSlice(nodeName, devices, generation);
      try {
        if (existing) {
          slice.metadata = { ...slice.metadata, resourceVersion: existing.metadata?.resourceVersion, ...(existing.metadata?.ownerReferences ? { ownerReferences: existing.metadata.ownerReferences } : {}) };
          await this.kube.replace(RESOURCE_SLICES, slice);
        } else {
          const node = await this.kube.get<{ metadata?: { uid?: string } }>(CoreResources.nodes, nodeName).catch(() => undefined);
          if (node?.metadata?.uid) slice.metadata = { ...slice.metadata, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: node.metadata.uid, controller: true }] };
          await this.kube.create(RESOURCE_SLICES, slice);
        }
        return generation;
      } catch (err) {
        // Someone else wrote in between (or a create raced an earlier one): read again, a few times.
        if ((err instanceof ConflictError || err instanceof AlreadyExistsError) && attempt < 3) continue;
        throw err;
      }
    }
  }
}

/** The file sink (no API server: tests, the QEMU guest): the slice as the API server would store it, written atomically. */
export class FileSliceSink implements SliceSink {
  private generation = 0;
  private last: readonly SliceDevice[] | undefined;
  constructor(
    private readonly path: string,
    private readonly files: DraFiles,
  ) {}
  async apply(nodeName: string, devices: readonly SliceDevice[]): Promise<number> {
    if (this.last && deepEqual(this.last, devices)) return this.generation;
    const generation = this.generation + 1;
    await this.files.writeAtomic(this.path, `${JSON.stringify(resourceSlice(nodeName, devices, generation), null, 2)}\n`);
    this.generation = generation;
    this.last = devices;
    return generation;
  }
}

export interface SlicePublisherDeps {
  readonly nodeName: string;
  readonly sink: SliceSink;
  readonly facts: (snapshot: HostSnapshot) => Promise<ReadonlyMap<string, GpuFacts>>;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Backoff after a failed write (ms): first, cap. Defaults 800 ms → 30 s, as client-go's reflector. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly random?: () => number;
  /**
   * Even when the host did not change, check the stored slice this often (ms; default 60 s): kubelet deletes a
   * driver's slices 30 s after the driver deregistered, and someone may delete or edit ours.
   */
  readonly resyncMs?: number;
}

/**
 * Keeps the node's ResourceSlice equal to the host: `update(snapshot)` after every rescan (hot add/remove,
 * a GPU that became unreadable). Writes only when the device list changed; a failed write is retried with
 * jittered backoff, always with the newest snapshot.
 */
export class SlicePublisher {
  private published: readonly SliceDevice[] | undefined;
  private pending: HostSnapshot | undefined;
  private running: Promise<void> | undefined;
  private failures = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private appliedAt = -Infinity;
  generation = 0;

  constructor(private readonly deps: SlicePublisherDeps) {}

  update(snapshot: HostSnapshot): Promise<void> {
    this.pending = snapshot;
    this.running ??= this.drain().finally(() => (this.running = undefined));
    return this.running;
  }

  /** The next update checks the stored slice even if the host did not change (e.g. after kubelet registered us again). */
  resync(): void {
    this.appliedAt = -Infinity;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private async drain(): Promise<void> {
    while (this.pending && !this.stopped) {
      const snapshot = this.pending;
      this.pending = undefined;
      const devices = sliceDevices(snapshot, await this.deps.facts(snapshot));
      const fresh = this.deps.clock.now() - this.appliedAt < (this.deps.resyncMs ?? 60_000);
      if (fresh && this.published && deepEqual(this.published, devices)) continue;
      try {
        this.generation = await this.deps.sink.apply(this.deps.nodeName, devices);
        this.published = devices;
        this.appliedAt = this.deps.clock.now();
        this.failures = 0;
        this.deps.logger.info({ devices: devices.map((d) => d.name), generation: this.generation }, 'ResourceSlice published');
      } catch (err) {
        const delay = jitteredBackoff(this.failures++, this.deps.backoff?.initialMs ?? 800, this.deps.backoff?.maxMs ?? 30_000, this.deps.random);
        this.deps.logger.warn({ err: err instanceof Error ? err.message : String(err), retryInMs: delay }, 'publishing the ResourceSlice failed');
        if (!this.pending) {
          if (this.timer) clearTimeout(this.timer);
          this.timer = setTimeout(() => {
            this.timer = undefined;
            void this.update(snapshot);
          }, delay);
          this.timer.unref?.();
        }
        return;
      }
    }
  }
}
