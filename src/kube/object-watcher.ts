import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { HttpKubeApi } from './http-kube-api.js';
import { describeResource, type KubeObject, type ResourceRef } from './port.js';
import { WatchRestartLog, WatchRestarts, type WatchRestartOptions } from './watch-restarts.js';

export interface ObjectWatcherOptions {
  readonly resource: ResourceRef;
  readonly labelSelector?: string;
  /**
   * Called with the object of every watch event, and after a (re)list with each listed object that is
   * new or changed since the watcher last saw it — with `undefined` when the list is empty and was not
   * empty (or not listed) before. A relist that changed nothing calls nothing.
   */
  readonly onChange: (obj: KubeObject | undefined) => void;
  /** Pacing of lists and watch restarts (see WatchRestarts; defaults follow client-go's reflector). */
  readonly backoff?: WatchRestartOptions;
  /** Jitter source in [0, 1); tests make it deterministic. */
  readonly random?: () => number;
}

/** What the watcher has done, for tests and the agent's debug logs. */
export interface ObjectWatcherStats {
  readonly lists: number;
  readonly watches: number;
  readonly restarts: { readonly short: number; readonly expired: number; readonly forbidden: number; readonly failed: number };
}

/**
 * List-then-watch for the few objects one node agent cares about, over the light HTTP adapter. A watch
 * that ends is resumed from the last resourceVersion; a 410 relists; every list and every watch start
 * waits on WatchRestarts (minimum interval, backoff with jitter after a failed or very short watch), so
 * no fault of the API server or a proxy in front of it turns the agent into a load generator.
 */
export class ObjectWatcher {
  private readonly seen = new Map<string, string | undefined>();
  private listed = false;
  private counters = { lists: 0, watches: 0, short: 0, expired: 0, forbidden: 0, failed: 0 };

  constructor(
    private readonly deps: { api: Pick<HttpKubeApi, 'list' | 'watch'>; clock: Clock; logger: Logger },
    private readonly opts: ObjectWatcherOptions,
  ) {}

  get stats(): ObjectWatcherStats {
    const c = this.counters;
    return { lists: c.lists, watches: c.watches, restarts: { short: c.short, expired: c.expired, forbidden: c.forbidden, failed: c.failed } };
  }

  async run(signal: AbortSignal): Promise<void> {
    const { clock, logger } = this.deps;
    const { resource, labelSelector } = this.opts;
    const pacing = new WatchRestarts({ clock, ...(this.opts.random ? { random: this.opts.random } : {}) }, this.opts.backoff);
    const what = describeResource(resource);
    const log = new WatchRestartLog({ clock, logger }, what);
    let rv: string | undefined; // undefined: (re)list first
    while (!signal.aborted) {
      try {
        await pacing.wait(signal);
      } catch {
        return;
      }
      if (rv === undefined) {
        try {
          const list = await this.deps.api.list<KubeObject>(resource, labelSelector !== undefined ? { labelSelector } : {});
          this.counters.lists++;
          rv = list.metadata.resourceVersion ?? '';
          this.deliverList(list.items);
        } catch (err) {
          if (signal.aborted) return;
          pacing.listFailed();
          log.restart('failed', pacing.delayMs(), err);
          continue;
        }
      }
      let events = 0;
      pacing.watchStarted();
      this.counters.watches++;
      let error: unknown;
      try {
        await this.deps.api.watch(
          resource,
          { ...(labelSelector !== undefined ? { labelSelector } : {}), ...(rv ? { resourceVersion: rv } : {}), timeoutSeconds: 300 },
          (type, obj) => {
            events++;
            rv = obj.metadata?.resourceVersion ?? rv;
            if (type === 'BOOKMARK') return;
            this.remember(type === 'DELETED' ? undefined : obj, obj);
            this.opts.onChange(obj);
          },
          signal,
        );
      } catch (err) {
        error = err ?? new Error('watch failed');
      }
      if (signal.aborted) return;
      const end = pacing.watchEnded(events, error);
      if (end === 'healthy') {
        log.healthy();
        continue;
      }
      this.counters[end]++;
      // Only a 410 loses the place in the history; after any other failure the watch resumes from rv.
      if (end === 'expired') rv = undefined;
      log.restart(end, pacing.delayMs(), error);
    }
  }

  private remember(current: KubeObject | undefined, obj: KubeObject): void {
    const name = obj.metadata?.name ?? '';
    if (current) this.seen.set(name, current.metadata?.resourceVersion);
    else this.seen.delete(name);
  }

  /** Calls onChange only for what a relist changed: new or modified objects, or a list gone empty. */
  private deliverList(items: readonly KubeObject[]): void {
    const hadAny = this.seen.size > 0;
    const before = new Map(this.seen);
    this.seen.clear();
    for (const item of items) this.seen.set(item.metadata?.name ?? '', item.metadata?.resourceVersion);
    const first = !this.listed;
    this.listed = true;
    if (items.length === 0) {
      if (first || hadAny) this.opts.onChange(undefined);
      return;
    }
    for (const item of items) {
      const name = item.metadata?.name ?? '';
      const rv = item.metadata?.resourceVersion;
      if (first || !before.has(name) || rv === undefined || before.get(name) !== rv) this.opts.onChange(item);
    }
  }
}
