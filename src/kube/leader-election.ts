/**
 * Lease-based leader election on `coordination.k8s.io/v1`, following client-go's leaderelection:
 * - a candidate takes the Lease when it does not exist, has no holder, or has not changed for
 *   `leaseDurationSeconds` as measured on the candidate's own clock since it last saw the record change
 *   (never by comparing our clock with the holder's `renewTime`, so clock skew cannot cause two leaders);
 * - the leader renews every `retryPeriodMs`; when it cannot renew for `renewDeadlineMs` it steps down
 *   (renewDeadline < leaseDuration, so it stops working before anyone else may take over);
 * - on stop, the leader releases the Lease (empty holder) so a successor starts at once.
 * Writes use the Lease's resourceVersion, so two candidates racing for an expired Lease cannot both win.
 */
import type { Clock } from '../core/clock.js';
import { ConflictError, NotFoundError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ReconcileRecorder } from '../metrics/recorders.js';
import { CoreResources, type KubeApi, type KubeObject } from './kube-api.js';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface LeaderElectionOptions {
  namespace: string;
  /** The Lease's name, e.g. `vfio-handoff-operator`. */
  name: string;
  /** This candidate's identity, unique per process (pod name plus a random suffix). */
  identity: string;
  /** Default 15 s. Stored in whole seconds (at least 1), as the Lease API does. */
  leaseDurationMs?: number;
  /** Default 10 s; must be below leaseDurationMs. */
  renewDeadlineMs?: number;
  /** Default 2 s. */
  retryPeriodMs?: number;
}

export interface LeaderCallbacks {
  /** Start working; `signal` aborts when leadership is lost or the elector stops. */
  onStartedLeading(signal: AbortSignal): void | Promise<void>;
  onStoppedLeading(): void;
  /** The observed holder changed (including to us). */
  onNewLeader?(identity: string): void;
}

export interface LeaderElectorDeps {
  api: Pick<KubeApi, 'get' | 'create' | 'replace'>;
  clock: Clock;
  logger: Logger;
  recorder?: Pick<ReconcileRecorder, 'leader'>;
}

/** RFC 3339 with microseconds, the Lease API's MicroTime. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  private leading = false;
  private observedHolder: string | undefined;
  private observedKey: string | undefined; // what changed last: holder + renewTime + resourceVersion
  private observedAt = 0;
  /** When the last successful acquire/renew was *sent* (its renewTime is no earlier), ms. */
  private renewedAt = -Infinity;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: Logger;

  constructor(
    private readonly deps: LeaderElectorDeps,
    private readonly options: LeaderElectionOptions,
  ) {
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (this.renewDeadlineMs >= this.leaseDurationMs) throw new Error('renewDeadlineMs must be less than leaseDurationMs');
    this.log = deps.logger.child({ lease: `${options.namespace}/${options.name}`, identity: options.identity });
  }

  isLeader(): boolean {
    return this.leading;
  }

  /**
   * Fencing check for the leader's writes: true only while leading and the last successful renewal was
   * sent less than renewDeadlineMs ago. A candidate takes over only after seeing the Lease unchanged for
   * leaseDurationMs (> renewDeadlineMs), so a write made while this holds cannot follow a successor's.
   * A process paused past its lease (GC, frozen VM, SIGSTOP) resumes with this false, before its renew
   * loop has noticed anything.
   */
  mayWrite(): boolean {
    return this.leading && this.deps.clock.now() - this.renewedAt < this.renewDeadlineMs;
  }

  /** The holder this candidate last observed. */
  leader(): string | undefined {
    return this.observedHolder;
  }

  /**
   * Campaigns until `signal` aborts: acquire, lead while renewals succeed, step down when they stop, and
   * campaign again. Resolves after releasing the Lease on abort.
   */
  async run(callbacks: LeaderCallbacks, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      while (!signal.aborted && !(await this.tryAcquireOrRenew(callbacks))) {
        if (!(await this.sleep(this.retryPeriodMs, signal))) break;
      }
      if (signal.aborted) break;

      this.setLeading(true);
      const work = new AbortController();
      this.log.info({}, 'started leading');
      void Promise.resolve()
        .then(() => callbacks.onStartedLeading(work.signal))
        .catch((err: unknown) => this.log.error({ err: err instanceof Error ? err.message : String(err) }, 'onStartedLeading failed'));

      let lastRenew = this.deps.clock.now();
      while (!signal.aborted) {
        if (!(await this.sleep(this.retryPeriodMs, signal))) break;
        if (await this.tryAcquireOrRenew(callbacks)) {
          lastRenew = this.deps.clock.now();
        } else if (this.deps.clock.now() - lastRenew >= this.renewDeadlineMs || (this.observedHolder !== undefined && this.observedHolder !== this.options.identity)) {
          break; // renew deadline passed, or someone else holds the Lease
        }
      }
      work.abort(new Error('leadership lost'));
      this.setLeading(false);
      this.log.info({}, 'stopped leading');
      callbacks.onStoppedLeading();
      if (signal.aborted) await this.release();
    }
  }

  private setLeading(v: boolean): void {
    this.leading = v;
    this.deps.recorder?.leader(v);
  }

  private async sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    try {
      await this.deps.clock.sleep(ms, signal);
      return true;
    } catch {
      return false;
    }
  }

  private observe(lease: Lease, callbacks: LeaderCallbacks): void {
    const s = lease.spec ?? {};
    const key = `${s.holderIdentity ?? ''}|${s.renewTime ?? ''}|${lease.metadata?.resourceVersion ?? ''}`;
    if (key !== this.observedKey) {
      this.observedKey = key;
      this.observedAt = this.deps.clock.now();
    }
    const holder = s.holderIdentity || undefined;
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      if (holder !== undefined) callbacks.onNewLeader?.(holder);
    }
  }

  private spec(now: number, previous: LeaseSpec | undefined): LeaseSpec {
    const ours = previous?.holderIdentity === this.options.identity;
    return {
      holderIdentity: this.options.identity,
      leaseDurationSeconds: Math.max(1, Math.ceil(this.leaseDurationMs / 1000)),
      acquireTime: ours && previous?.acquireTime ? previous.acquireTime : microTime(now),
      renewTime: microTime(now),
      leaseTransitions: ours ? (previous?.leaseTransitions ?? 0) : (previous?.leaseTransitions ?? -1) + 1,
    };
  }

  /** One attempt; true when we hold the Lease afterwards. Errors count as "not held" and are logged. */
  private async tryAcquireOrRenew(callbacks: LeaderCallbacks): Promise<boolean> {
    const { api, clock } = this.deps;
    const { namespace, name, identity } = this.options;
    const now = clock.now();
    try {
      let lease: Lease;
      try {
        lease = await api.get<Lease>(CoreResources.leases, name, namespace);
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
        const created = await api.create<Lease>(CoreResources.leases, { metadata: { name, namespace }, spec: this.spec(now, undefined) });
        this.observe(created, callbacks);
        this.renewedAt = now;
        return true;
      }
      this.observe(lease, callbacks);
      const holder = lease.spec?.holderIdentity;
      const durationMs = (lease.spec?.leaseDurationSeconds ?? Math.ceil(this.leaseDurationMs / 1000)) * 1000;
      if (holder && holder !== identity && this.observedAt + durationMs > now) return false;
      const updated = await api.replace<Lease>(CoreResources.leases, { ...lease, spec: this.spec(now, lease.spec) });
      this.observe(updated, callbacks);
      this.renewedAt = now;
      return true;
    } catch (err) {
      if (!(err instanceof ConflictError)) this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'lease update failed');
      return false;
    }
  }

  /** Gives the Lease up so a successor need not wait for it to expire. */
  private async release(): Promise<void> {
    const { namespace, name, identity } = this.options;
    try {
      const lease = await this.deps.api.get<Lease>(CoreResources.leases, name, namespace);
      if (lease.spec?.holderIdentity !== identity) return;
      const now = microTime(this.deps.clock.now());
      await this.deps.api.replace<Lease>(CoreResources.leases, {
        ...lease,
        spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: now, acquireTime: now },
      });
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'releasing the lease failed');
    }
  }
}
