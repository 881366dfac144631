/**
 * When a list or watch may start again: the one pacing rule both API clients (the agent's light HTTP
 * client and client-node's ListWatch under the operator's informers) go through.
 *
 * The anchor is client-go's reflector (k8s.io/client-go/tools/cache/reflector.go): every relist and every
 * watch restart after a failure waits on a backoff manager (800 ms doubling to 30 s, jittered), and a
 * watch that ends within a second without delivering an event counts as a failure ("very short watch …
 * Unexpected watch close"), so neither a proxy that ends every watch at once nor a 410 on every watch
 * turns into a tight list/watch loop. We add a minimum interval between any two watch starts, so even a
 * watch that delivered events and then ended cannot be restarted more often than once a `minIntervalMs`.
 *
 * A successful list does not reset the backoff (it did in the agent, which then retried a failing watch
 * every 200 ms for ever); only a watch that stayed open for `resetAfterMs` does.
 */
import type { Clock } from '../core/clock.js';
import { KubeApiError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { backoffDelay } from '../core/backoff.js';
import { ResourceExpiredError } from './port.js';

export interface WatchRestartOptions {
  /** First backoff after a failure, ms. Default 800 (client-go's reflector). */
  readonly initialMs?: number;
  /** Backoff cap, ms. Default 30,000 (client-go's reflector). */
  readonly maxMs?: number;
  /** Least time between two watch starts, ms, whatever the outcome. Default 1,000. */
  readonly minIntervalMs?: number;
  /** A watch that ends sooner than this without an event is a failure, ms. Default 1,000 (client-go). */
  readonly shortWatchMs?: number;
  /** A watch that stayed open this long resets the backoff, ms. Default 30,000. */
  readonly resetAfterMs?: number;
}

export interface WatchRestartDeps {
  readonly clock: Clock;
  /** Jitter source in [0, 1); tests make it deterministic. Default Math.random. */
  readonly random?: () => number;
}

/** How a watch ended, as the pacing sees it. */
export type WatchEnd = 'healthy' | 'short' | 'expired' | 'forbidden' | 'failed';

export class WatchRestarts {
  private readonly o: Required<WatchRestartOptions>;
  private notBefore = 0;
  private failures = 0;
  private startedAt: number | undefined;
  private lastStart = -Infinity;

  constructor(
    private readonly deps: WatchRestartDeps,
    options: WatchRestartOptions = {},
  ) {
    this.o = {
      initialMs: options.initialMs ?? 800,
      maxMs: options.maxMs ?? 30_000,
      minIntervalMs: options.minIntervalMs ?? 1_000,
      shortWatchMs: options.shortWatchMs ?? 1_000,
      resetAfterMs: options.resetAfterMs ?? 30_000,
    };
  }

  /** Consecutive failures (short or failed watches, failed lists) since the last healthy watch. */
  get attempts(): number {
    return this.failures;
  }

  /** The wait `wait()` would do now, ms. */
  delayMs(): number {
    return Math.max(0, this.notBefore - this.deps.clock.now());
  }

  /** Waits until the next list or watch may start; rejects when `signal` aborts. */
  async wait(signal?: AbortSignal): Promise<void> {
    const d = this.delayMs();
    if (d > 0) await this.deps.clock.sleep(d, signal);
  }

  /** A watch request is being sent now. */
  watchStarted(): void {
    const now = this.deps.clock.now();
    this.startedAt = now;
    this.lastStart = now;
    this.notBefore = Math.max(this.notBefore, now + this.o.minIntervalMs);
  }

  /**
   * The watch started last ended: cleanly (`err` undefined) after `events` events, or with `err`.
   * Returns how it counts and sets when the next start may be.
   */
  watchEnded(events: number, err?: unknown): WatchEnd {
    const now = this.deps.clock.now();
    const lasted = now - (this.startedAt ?? now);
    this.startedAt = undefined;
    let end: WatchEnd;
    if (err !== undefined) end = classify(err);
    else end = lasted < this.o.shortWatchMs && events === 0 ? 'short' : 'healthy';
    if (end === 'healthy') {
      if (lasted >= this.o.resetAfterMs) this.failures = 0;
      this.notBefore = Math.max(this.notBefore, this.lastStart + this.jitter(this.o.minIntervalMs));
    } else {
      this.fail(now);
    }
    return end;
  }

  /** A list failed: the next attempt waits a backoff. */
  listFailed(): void {
    this.fail(this.deps.clock.now());
  }

  private fail(now: number): void {
    const delay = backoffDelay(this.failures, { initialMs: this.o.initialMs, maxMs: this.o.maxMs }, this.deps.random);
    this.failures++;
    this.notBefore = Math.max(this.notBefore, now + delay);
  }

  private jitter(ms: number): number {
    return Math.round(ms * (1 + 0.2 * (this.deps.random ?? Math.random)()));
  }
}

/** The HTTP status of an error from either client (our KubeApiError, client-node's `statusCode`/`code`). */
export function statusOf(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.status;
  const e = err as { statusCode?: unknown; code?: unknown; status?: unknown } | null;
  for (const v of [e?.statusCode, e?.code, e?.status]) if (typeof v === 'number') return v;
  return undefined;
}

function classify(err: unknown): WatchEnd {
  if (err instanceof ResourceExpiredError) return 'expired';
  const s = statusOf(err);
  if (s === 410) return 'expired';
  if (s === 403) return 'forbidden';
  return 'failed';
}

/**
 * What a watcher logs about its restarts, so a fault that lasts a day writes a handful of lines, not one
 * per retry: a 403 names the missing permission once (until a watch works again); a watch that keeps
 * ending or failing is reported at most once per `everyMs`, with how many times it happened since.
 */
export class WatchRestartLog {
  private forbiddenSaid = false;
  private reported = false;
  private lastSaid = -Infinity;
  private since = 0;

  constructor(
    private readonly deps: { readonly clock: Clock; readonly logger: Logger },
    private readonly what: string,
    private readonly verbOnForbidden: string = 'watch',
    private readonly everyMs = 60_000,
  ) {}

  /** A watch worked (stayed open, delivered events): the next fault is news again. */
  healthy(): void {
    if (this.reported) this.deps.logger.info({ resource: this.what }, 'watch works again');
    this.reported = false;
    this.forbiddenSaid = false;
    this.since = 0;
    this.lastSaid = -Infinity;
  }

  /** Reports one restart; `retryInMs` is the wait before the next attempt. */
  restart(end: Exclude<WatchEnd, 'healthy'>, retryInMs: number, err?: unknown): void {
    const message = err instanceof Error ? err.message : err === undefined ? undefined : String(err);
    if (end === 'forbidden') {
      if (this.forbiddenSaid) return;
      this.forbiddenSaid = true;
      this.reported = true;
      this.deps.logger.error(
        { resource: this.what, err: message },
        `the service account's role lacks the "${this.verbOnForbidden}" verb on ${this.what}: grant it in the ClusterRole (retrying with backoff up to 30 s; no more lines about this until it works)`,
      );
      return;
    }
    this.since++;
    const now = this.deps.clock.now();
    if (now - this.lastSaid < this.everyMs) return;
    this.lastSaid = now;
    this.reported = true;
    const times = this.since;
    this.since = 0;
    if (end === 'short') {
      this.deps.logger.warn(
        { resource: this.what, times, retryInMs },
        'watch keeps ending at once without an event (a proxy or load balancer closing long requests?); backing off',
      );
    } else if (end === 'expired') {
      this.deps.logger.warn({ resource: this.what, times, retryInMs }, 'watch history expired (410); relisting with backoff');
    } else {
      this.deps.logger.warn({ resource: this.what, times, retryInMs, err: message }, 'watch failed; retrying with backoff');
    }
  }
}
