/**
 * A resilient informer over client-node's `makeInformer` (ListWatch).
 *
 * client-node's ListWatch reconnects after a clean end of the watch and relists after 410, but after any
 * other error (a 500 on list, a reset connection) it only emits `error` and stops for good. This wrapper
 * restarts it with capped exponential backoff, re-emits every cached object on a resync timer (informers
 * can go silent without an error, kubernetes-client/javascript#596/#958, so controllers must be
 * level-triggered), and reports `hasSynced` once the first list has landed in the cache.
 */
import { ADD, CONNECT, DELETE, ERROR, ListWatch, UPDATE, Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { collectionPath, type KubeApi, type KubeObject, type ResourceRef } from './kube-api.js';

export interface InformerHandlers<T> {
  add?(obj: T): void;
  update?(obj: T): void;
  delete?(obj: T): void;
  /** Called for every cached object on each resync; falls back to `update` when absent. */
  resync?(obj: T): void;
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

export interface ResilientInformerOptions {
  resource: ResourceRef;
  namespace?: string;
  labelSelector?: string;
  /** Re-emit every cached object this often; 0 disables. Default 0. */
  resyncPeriodMs?: number;
  /** Restart backoff after errors. Default 200 ms doubling to 30 s, with ±20 % jitter. */
  backoff?: BackoffOptions;
}

export interface ResilientInformerDeps {
  kubeConfig: KubeConfig;
  api: Pick<KubeApi, 'list'>;
  clock: Clock;
  logger: Logger;
  /** Jitter source in [0, 1); injectable so tests are deterministic. Default Math.random. */
  random?: () => number;
}

export interface InformerStats {
  /** Restarts after an error (client-node stopped and we started it again). */
  readonly restarts: number;
  readonly errors: number;
  /** Connects, including the first and every watch reconnect client-node does by itself. */
  readonly connects: number;
  readonly lists: number;
}

/**
 * client-node's ListWatch (what `makeInformer` builds) with a Watch that can be closed for good.
 * ListWatch.stop() aborts only a watch request whose response has already arrived; a request still in
 * flight when stop() runs would otherwise stay open and keep delivering events. This Watch aborts any
 * request that completes after `close()`.
 */
class ClosableWatch extends Watch {
  private closed = false;
  private readonly open = new Set<AbortController>();

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    // `done` may run before super.watch returns (an HTTP error answer), so `c` can still be unset there.
    const ref: { c?: AbortController; finished?: boolean } = {};
    const c = await super.watch(path, queryParams, callback, (err) => {
      ref.finished = true;
      if (ref.c) this.open.delete(ref.c);
      done(err);
    });
    ref.c = c;
    if (this.closed) c.abort();
    else if (ref.finished !== true) this.open.add(c);
    return c;
  }

  close(): void {
    this.closed = true;
    for (const c of this.open) c.abort();
    this.open.clear();
  }
}

/** Capped exponential backoff with jitter: attempt 0 → ~initial, then doubling up to max. */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const base = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export class ResilientInformer<T extends KubeObject> {
  private readonly handlers: InformerHandlers<T>[] = [];
  private informer: ListWatch<KubernetesObject> | undefined;
  private watch: ClosableWatch | undefined;
  private controller: AbortController | undefined;
  private synced = false;
  private attempt = 0;
  private restarting = false;
  private counters = { restarts: 0, errors: 0, connects: 0, lists: 0 };
  private readonly syncWaiters: (() => void)[] = [];
  private readonly log: Logger;

  constructor(
    private readonly deps: ResilientInformerDeps,
    private readonly options: ResilientInformerOptions,
  ) {
    this.log = deps.logger.child({ informer: options.resource.plural, namespace: options.namespace });
  }

  /** Register handlers before `start` to see the initial list as `add` events. */
  on(handlers: InformerHandlers<T>): void {
    this.handlers.push(handlers);
  }

  hasSynced(): boolean {
    return this.synced;
  }

  get stats(): InformerStats {
    return { ...this.counters };
  }

  /** Resolves once the first list is in the cache; rejects if `signal` aborts first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer?.get(name, namespace) as unknown as T | undefined;
  }

  list(namespace?: string): T[] {
    return [...(this.informer?.list(namespace) ?? [])] as unknown as T[];
  }

  /**
   * Starts listing and watching; returns at once. Runs until `stop()` or until `signal` aborts.
   * Calling start twice is an error.
   */
  start(signal?: AbortSignal): void {
    if (this.controller) throw new Error('informer already started');
    const controller = new AbortController();
    this.controller = controller;
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    const { resource, namespace, labelSelector } = this.options;
    const listFn = async (): Promise<{ items: KubernetesObject[]; metadata: { resourceVersion?: string } }> => {
      const list = await this.deps.api.list<T>(resource, {
        ...(namespace !== undefined ? { namespace } : {}),
        ...(labelSelector !== undefined ? { labelSelector } : {}),
      });
      this.counters.lists++;
      // ListWatch adds the items to its cache synchronously right after this promise settles; mark the
      // cache synced after that continuation has run.
      setImmediate(() => this.markSynced());
      return list as unknown as { items: KubernetesObject[]; metadata: { resourceVersion?: string } };
    };
    this.watch = new ClosableWatch(this.deps.kubeConfig);
    const informer = new ListWatch<KubernetesObject>(collectionPath(resource, namespace), this.watch, listFn as never, false, labelSelector);
    this.informer = informer;
    informer.on(ADD, (o) => this.emit('add', o as unknown as T));
    informer.on(UPDATE, (o) => this.emit('update', o as unknown as T));
    informer.on(DELETE, (o) => this.emit('delete', o as unknown as T));
    informer.on(CONNECT, () => {
      this.counters.connects++;
    });
    informer.on(ERROR, (err) => this.onError(err));
    void informer.start().catch((err: unknown) => this.onError(err));
    if ((this.options.resyncPeriodMs ?? 0) > 0) void this.resyncLoop(controller.signal);
  }

  async stop(): Promise<void> {
    const c = this.controller;
    if (!c || c.signal.aborted) return;
    c.abort(new Error('informer stopped'));
    this.watch?.close();
    await this.informer?.stop();
  }

  /** Re-emits every cached object to the handlers now. */
  resync(): void {
    for (const o of this.list()) {
      for (const h of this.handlers) (h.resync ?? h.update)?.call(h, o);
    }
  }

  private markSynced(): void {
    // Any successful list means the connection works again.
    this.attempt = 0;
    if (this.synced) return;
    this.synced = true;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  private emit(kind: 'add' | 'update' | 'delete', obj: T): void {
    if (this.controller?.signal.aborted) return;
    // A watch event also proves the stream is healthy.
    this.attempt = 0;
    for (const h of this.handlers) {
      try {
        h[kind]?.(obj);
      } catch (err) {
        this.log.error({ err, kind }, 'informer handler threw');
      }
    }
  }

  private onError(err: unknown): void {
    const signal = this.controller?.signal;
    // Stopping aborts the watch request, which client-node reports as an error; that is not a failure.
    if (!signal || signal.aborted) return;
    this.counters.errors++;
    if (this.restarting) return;
    this.restarting = true;
    const delay = backoffDelay(this.attempt++, this.options.backoff ?? { initialMs: 200, maxMs: 30_000 }, this.deps.random);
    this.log.warn({ err: err instanceof Error ? err.message : String(err), delayMs: delay }, 'informer failed; restarting');
    void this.deps.clock
      .sleep(delay, signal)
      .then(async () => {
        this.restarting = false;
        if (signal.aborted || !this.informer) return;
        this.counters.restarts++;
        // ListWatch keeps its resourceVersion, so this resumes the watch (or relists after a 410).
        await this.informer.start();
      })
      .catch((e: unknown) => {
        this.restarting = false;
        if (!signal.aborted) this.onError(e);
      });
  }

  private async resyncLoop(signal: AbortSignal): Promise<void> {
    const period = this.options.resyncPeriodMs ?? 0;
    while (!signal.aborted) {
      try {
        await this.deps.clock.sleep(period, signal);
      } catch {
        return;
      }
      if (this.synced) this.resync();
    }
  }
}
