import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { HttpKubeApi } from './http-kube-api.js';
import { ResourceExpiredError, type KubeObject, type ResourceRef } from './port.js';

export interface ObjectWatcherOptions {
  readonly resource: ResourceRef;
  readonly labelSelector?: string;
  /**
   * Called with each listed object after a (re)list — with `undefined` when the list is empty — and
   * with the object of every event.
   */
  readonly onChange: (obj: KubeObject | undefined) => void;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

/**
 * List-then-watch for the few objects one node agent cares about, over the light HTTP adapter. A stream
 * that ends is resumed from the last resourceVersion; a 410 relists; any other failure relists after a
 * capped backoff. The agent treats every call as "something changed" and reconciles from a fresh read.
 */
export class ObjectWatcher {
  constructor(
    private readonly deps: { api: Pick<HttpKubeApi, 'list' | 'watch'>; clock: Clock; logger: Logger },
    private readonly opts: ObjectWatcherOptions,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    const { initialMs, maxMs } = this.opts.backoff ?? { initialMs: 200, maxMs: 30_000 };
    let failures = 0;
    while (!signal.aborted) {
      try {
        const list = await this.deps.api.list<KubeObject>(this.opts.resource, { labelSelector: this.opts.labelSelector });
        let rv = list.metadata.resourceVersion;
        if (list.items.length === 0) this.opts.onChange(undefined);
        for (const item of list.items) this.opts.onChange(item);
        failures = 0;
        while (!signal.aborted) {
          await this.deps.api.watch(
            this.opts.resource,
            { labelSelector: this.opts.labelSelector, resourceVersion: rv, timeoutSeconds: 300 },
            (type, obj) => {
              rv = obj.metadata?.resourceVersion ?? rv;
              if (type !== 'BOOKMARK') this.opts.onChange(obj);
            },
            signal,
          );
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ResourceExpiredError) continue; // relist at once
        failures++;
        const delay = Math.min(initialMs * 2 ** (failures - 1), maxMs);
        this.deps.logger.warn({ err: (err as Error).message, retryInMs: delay }, 'watch failed; relisting');
        await this.deps.clock.sleep(delay, signal).catch(() => undefined);
      }
    }
  }
}
