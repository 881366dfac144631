/**
 * A resilient informer over client-node's `makeInformer` (ListWatch).
 *
 * client-node's ListWatch reconnects at once after a clean end of the watch and relists at once after a
 * 410, and after any other error (a 500 on list, a reset connection) it only emits `error` and stops for
 * good. So a proxy that ends every watch at once, or a 410 on every watch, made it a tight loop (~550
 * requests/s from one operator, issue 17). This wrapper puts every list and every watch start through
 * WatchRestarts (client-go's reflector pacing: minimum interval, backoff with jitter after a failed or very
 * short watch), restarts it after errors, re-emits every cached object on a resync timer (informers can go
 * silent without an error, kubernetes-client/javascript#596/#958, so controllers must be level-triggered),
 * and reports `hasSynced` once the first list has landed in the cache.
 */
import { ADD, CONNECT, DELETE, ERROR, ListWatch, UPDATE, Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { collectionPath, type KubeApi, type KubeObject, type ResourceRef } from './kube-api.js';
import { describeResource } from './port.js';
import { statusOf, WatchRestartLog, WatchRestarts, type WatchEnd, type WatchRestartOptions } from './watch-restarts.js';

export interface InformerHandlers<T> {
  add?(obj: T): void;
  update?(obj: T): void;
  delete?(obj: T): void;
  /** Called for every cached object on each resync; falls back to `update` when absent. */
  resync?(obj: T): void;
}

/** Per-key requeue pacing of the work queue (kept under this name for src/kube's public API). */
export type { Backoff as BackoffOptions } from '../core/backoff.js';

export interface ResilientInformerOptions {
  resource: ResourceRef;
  namespace?: string;
  labelSelector?: string;
  /** Re-emit every cached object this often; 0 disables. Default 0. */
  resyncPeriodMs?: number;
  /** Pacing of lists and watch restarts. Default: client-go's reflector (800 ms doubling to 30 s, ±20 % jitter; 1 s between watch starts). */
  backoff?: WatchRestartOptions;
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

/** What ClosableWatch reports to its informer about each watch it runs. */
interface WatchHooks {
  /** Resolves when the next watch may start; rejects when the informer stops. */
  pace(): Promise<void>;
  started(): void;
  ended(events: number, err: unknown): void;
}

/**
 * client-node's ListWatch (what `makeInformer` builds) with a Watch that can be closed for good and that
 * paces itself. ListWatch.stop() aborts only a watch request whose response has already arrived; a request
 * still in flight when stop() runs would otherwise stay open and keep delivering events. This Watch aborts
 * any request that completes after `close()`. Every start waits on `hooks.pace()`, and every end (a 410
 * arrives as an ERROR event followed by a clean end) is reported, so restarts follow WatchRestarts.
 */
class ClosableWatch extends Watch {
  private closed = false;
  private readonly open = new Set<AbortController>();

  constructor(
    kubeConfig: KubeConfig,
    private readonly hooks: WatchHooks,
  ) {
    super(kubeConfig);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    // ListWatch calls this from the previous watch's done callback without awaiting it: never reject.
    try {
      await this.hooks.pace();
    } catch {
      const c = new AbortController();
      c.abort();
      return c;
    }
    if (this.closed) {
      const c = new AbortController();
      c.abort();
      return c;
    }
    // `done` may run before super.watch returns (an HTTP error answer), so `c` can still be unset there.
    const ref: { c?: AbortController; finished?: boolean } = {};
    let events = 0;
    let expired: unknown;
    this.hooks.started();
    const c = await super.watch(
      path,
      queryParams,
      (phase, obj, watchObj) => {
        if (phase === 'ERROR') {
          const code = (obj as { code?: unknown } | null)?.code;
          expired = Object.assign(new Error(`watch ${path}: ${(obj as { message?: string } | null)?.message ?? `code ${String(code)}`}`), { code });
        } else events++;
        callback(phase, obj, watchObj);
      },
      (err) => {
        ref.finished = true;
        if (ref.c) this.open.delete(ref.c);
        if (!this.closed) this.hooks.ended(events, err ?? expired ?? undefined);
        done(err);
      },
    );
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

export class ResilientInformer<T extends KubeObject> {
  private readonly handlers: InformerHandlers<T>[] = [];
  private informer: ListWatch<KubernetesObject> | undefined;
  private watch: ClosableWatch | undefined;
  private controller: AbortController | undefined;
  private synced = false;
  private restarting = false;
  private readonly pacing: WatchRestarts;
  private readonly watchLog: WatchRestartLog;
  private readonly listLog: WatchRestartLog;
  /** The error the last watch ended with: ListWatch re-emits it, and it is already counted and logged. */
  private lastWatchError: unknown;
  private counters = { restarts: 0, errors: 0, connects: 0, lists: 0 };
  private readonly syncWaiters: (() => void)[] = [];
  private readonly log: Logger;

  constructor(
    private readonly deps: ResilientInformerDeps,
    private readonly options: ResilientInformerOptions,
  ) {
    this.log = deps.logger.child({ informer: options.resource.plural, namespace: options.namespace });
    this.pacing = new WatchRestarts({ clock: deps.clock, ...(deps.random ? { random: deps.random } : {}) }, options.backoff);
    const what = describeResource(options.resource, undefined, options.namespace);
    this.watchLog = new WatchRestartLog({ clock: deps.clock, logger: this.log }, what, 'watch');
    this.listLog = new WatchRestartLog({ clock: deps.clock, logger: this.log }, what, 'list');
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
      const waiter = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      // An aborted wait leaves neither its listener nor its waiter behind (one per leadership term).
      const onAbort = (): void => {
        const i = this.syncWaiters.indexOf(waiter);
        if (i >= 0) this.syncWaiters.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(waiter);
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
    const onAbort = (): void => void this.stop();
    signal?.addEventListener('abort', onAbort, { once: true });
    controller.signal.addEventListener('abort', () => signal?.removeEventListener('abort', onAbort), { once: true });
    const { resource, namespace, labelSelector } = this.options;
    const listFn = async (): Promise<{ items: KubernetesObject[]; metadata: { resourceVersion?: string } }> => {
      // A relist (after a 410, or a restart) waits its turn like a watch does; throwing on abort is fine
      // here: ListWatch catches list errors and emits `error`, which a stopped informer ignores.
      await this.pacing.wait(controller.signal);
      let list;
      try {
        list = await this.deps.api.list<T>(resource, {
          ...(namespace !== undefined ? { namespace } : {}),
          ...(labelSelector !== undefined ? { labelSelector } : {}),
        });
      } catch (err) {
        if (!controller.signal.aborted) {
          this.pacing.listFailed();
          this.listLog.restart(statusEnd(err), this.pacing.delayMs(), err);
          this.lastWatchError = err;
        }
        throw err;
      }
      this.counters.lists++;
      // ListWatch adds the items to its cache synchronously right after this promise settles; mark the
      // cache synced after that continuation has run.
      setImmediate(() => this.markSynced());
      return list as unknown as { items: KubernetesObject[]; metadata: { resourceVersion?: string } };
    };
    this.watch = new ClosableWatch(this.deps.kubeConfig, {
      pace: () => this.pacing.wait(controller.signal),
      started: () => this.pacing.watchStarted(),
      ended: (events, err) => {
        const end = this.pacing.watchEnded(events, err ?? undefined);
        if (end === 'healthy') {
          this.watchLog.healthy();
          this.listLog.healthy();
          return;
        }
        this.lastWatchError = err;
        this.watchLog.restart(end, this.pacing.delayMs(), err ?? undefined);
      },
    });
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
    // A successful list does not reset the backoff: a watch that keeps failing must not be retried at
    // the list's pace (issue 17). Only a watch that stays open does (WatchRestarts).
    if (this.synced) return;
    this.synced = true;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  private emit(kind: 'add' | 'update' | 'delete', obj: T): void {
    if (this.controller?.signal.aborted) return;
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
    if (err !== this.lastWatchError) {
      // Neither a watch end nor a list failure (both are paced and logged where they happen).
      this.pacing.listFailed();
      this.watchLog.restart('failed', this.pacing.delayMs(), err);
    }
    this.lastWatchError = undefined;
    void this.pacing
      .wait(signal)
      .then(async () => {
        this.restarting = false;
        if (signal.aborted || !this.informer) return;
        this.counters.restarts++;
        // ListWatch keeps its resourceVersion, so this resumes the watch (or relists after a 410).
        // A restart that fails throws nothing here: ListWatch reports it through `error` again.
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

function statusEnd(err: unknown): Exclude<WatchEnd, 'healthy'> {
  const code = statusOf(err);
  return code === 403 ? 'forbidden' : code === 410 ? 'expired' : 'failed';
}
