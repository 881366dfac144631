/**
 * A keyed, deduplicating work queue with the client-go workqueue semantics controllers rely on:
 * - adding a key that is already waiting is a no-op (events collapse into one reconcile);
 * - a key is never reconciled by two workers at once; a key added while it is being reconciled is
 *   queued again once that reconcile finishes (so the latest state is always seen);
 * - failures requeue with per-key exponential backoff; a ConflictError (409) is an expected race and
 *   requeues the same way without being counted as an error; success resets the key's backoff;
 * - a reconcile may ask to run again after a delay (`requeueAfterMs`).
 */
import type { Clock } from '../core/clock.js';
import { ConflictError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ReconcileRecorder } from '../metrics/recorders.js';
import { backoffDelay, type Backoff as BackoffOptions } from '../core/backoff.js';

export interface ReconcileOutcome {
  /** Run this key again after the delay even though the reconcile succeeded (polling, waiting on agents). */
  requeueAfterMs?: number;
}

export type Reconciler = (key: string, signal: AbortSignal) => Promise<ReconcileOutcome | void>;

export interface WorkQueueDeps {
  clock: Clock;
  logger: Logger;
  recorder: Pick<ReconcileRecorder, 'reconciled' | 'queueDepth'>;
  random?: () => number;
}

export interface WorkQueueOptions {
  /** Metric/log label, e.g. `gpupassthrough`. */
  name: string;
  /** Per-key failure backoff. Default 5 ms doubling to 60 s (client-go's default rate limiter). */
  backoff?: BackoffOptions;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private queueHead = 0;
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, number>(); // key -> due time (ms), the earliest wins
  private readonly waiters: (() => void)[] = [];
  private readonly timers = new AbortController();
  private shuttingDown = false;
  private readonly log: Logger;

  constructor(
    private readonly deps: WorkQueueDeps,
    private readonly options: WorkQueueOptions,
  ) {
    this.log = deps.logger.child({ queue: options.name });
  }

  /** Keys waiting to be reconciled (not counting delayed or in-flight ones). */
  depth(): number {
    return this.queue.length - this.queueHead;
  }

  /** Keys being reconciled right now. */
  inFlight(): number {
    return this.processing.size;
  }

  /** Keys waiting for a delayed requeue. */
  delayedCount(): number {
    return this.delayed.size;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return; // requeued when the running reconcile finishes
    this.queue.push(key);
    this.reportDepth();
    this.waiters.shift()?.();
  }

  /** Adds `key` after `ms`; an earlier pending delay for the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const due = this.deps.clock.now() + ms;
    const existing = this.delayed.get(key);
    if (existing !== undefined && existing <= due) return;
    this.delayed.set(key, due);
    this.deps.clock.sleep(ms, this.timers.signal).then(
      () => {
        if (this.delayed.get(key) !== due) return; // superseded by an earlier delay
        this.delayed.delete(key);
        this.add(key);
      },
      () => undefined,
    );
  }

  /** Requeues `key` after its next backoff step. */
  addRateLimited(key: string): void {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    this.addAfter(key, backoffDelay(n, this.options.backoff ?? { initialMs: 5, maxMs: 60_000 }, this.deps.random));
  }

  /** Resets `key`'s backoff. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** How many times `key` has been requeued after failures since it last succeeded. */
  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /**
   * Runs `workers` loops calling `reconcile` until `signal` aborts; resolves after in-flight reconciles
   * finish. Queued keys are dropped on shutdown (level-triggered: the next leader relists anyway).
   */
  async run(reconcile: Reconciler, opts: { workers: number; signal: AbortSignal }): Promise<void> {
    const { signal } = opts;
    const onAbort = (): void => {
      this.shuttingDown = true;
      this.timers.abort();
      for (const w of this.waiters.splice(0)) w();
    };
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    const workers = Array.from({ length: Math.max(1, opts.workers) }, () => this.worker(reconcile, signal));
    await Promise.all(workers);
    signal.removeEventListener('abort', onAbort);
  }

  private next(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    if (this.queueHead < this.queue.length) {
      const key = this.queue[this.queueHead++] as string;
      if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue.splice(0, this.queueHead);
        this.queueHead = 0;
      }
      this.dirty.delete(key);
      this.processing.add(key);
      this.reportDepth();
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.waiters.push(() => resolve(this.next())));
  }

  private done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) {
      this.queue.push(key);
      this.reportDepth();
      this.waiters.shift()?.();
    }
  }

  private async worker(reconcile: Reconciler, signal: AbortSignal): Promise<void> {
    for (;;) {
      const key = await this.next();
      if (key === undefined) return;
      const started = this.deps.clock.now();
      const seconds = (): number => (this.deps.clock.now() - started) / 1000;
      try {
        const outcome = await reconcile(key, signal);
        this.forget(key);
        this.deps.recorder.reconciled(this.options.name, 'success', seconds());
        if (outcome?.requeueAfterMs !== undefined) this.addAfter(key, outcome.requeueAfterMs);
      } catch (err) {
        if (err instanceof ConflictError) {
          // Someone wrote the object since we read it: reconcile again from the fresh state.
          this.deps.recorder.reconciled(this.options.name, 'requeue', seconds());
          this.log.debug({ key, err: err.message }, 'conflict; requeueing');
        } else {
          this.deps.recorder.reconciled(this.options.name, 'error', seconds());
          this.log.warn({ key, err: err instanceof Error ? err.message : String(err), retries: this.retries(key) }, 'reconcile failed; requeueing');
        }
        this.addRateLimited(key);
      } finally {
        this.done(key);
      }
    }
  }

  private reportDepth(): void {
    this.deps.recorder.queueDepth(this.options.name, this.depth());
  }
}
