/**
 * Records core/v1 Events about objects, aggregating repeats the way kubelet/client-go do, so a
 * reconcile loop that fails every few seconds produces one Event with a rising `count` instead of a storm.
 *
 * Repeats (same object, type, reason and message within `aggregateWindowMs`) patch the existing Event's
 * `count` and `lastTimestamp`. Writes for one key are serialised; repeats arriving while a write is in
 * flight are folded into the next write. Recording never throws: Events are best-effort diagnostics.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { NotFoundError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { CoreResources, type KubeApi, type KubeObject } from './kube-api.js';

export type EventType = 'Normal' | 'Warning';

export interface ObjectReference {
  apiVersion?: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
}

export interface CoreEvent extends KubeObject {
  involvedObject: ObjectReference;
  reason: string;
  message: string;
  type: EventType;
  count: number;
  firstTimestamp: string;
  lastTimestamp: string;
  source: { component: string; host?: string };
  reportingComponent: string;
  reportingInstance?: string;
}

export interface EventRecorderDeps {
  api: Pick<KubeApi, 'create' | 'patch'>;
  clock: Clock;
  logger: Logger;
}

export interface EventRecorderOptions {
  /** `source.component` / `reportingComponent`, e.g. `vfio-handoff-operator`. */
  component: string;
  /** `source.host` / `reportingInstance`, e.g. the node or pod name. */
  host?: string;
  /** Namespace for Events about cluster-scoped objects (Nodes, GpuPassthroughs). Default `default`. */
  defaultNamespace?: string;
  /** Repeats within this window aggregate into one Event. Default 10 minutes. */
  aggregateWindowMs?: number;
  /** Aggregation entries kept (least recently used are dropped). Default 4096. */
  maxCacheEntries?: number;
}

interface Entry {
  name: string | undefined; // the Event's name once created
  namespace: string;
  count: number; // count the server has
  pending: number; // repeats not yet written
  firstTimestamp: string;
  lastSeen: number;
  chain: Promise<void>;
}

/** Kubernetes' Event timestamps are whole seconds. */
function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** An Event's metadata.name is a DNS subdomain: at most 253 characters. */
export const MAX_EVENT_NAME = 253;

/**
 * `<object name>.<unique suffix>` as client-go names Events, with the object's name cut so the whole
 * stays within 253 characters (a 253-character policy name made names the API server refuses) and does
 * not end in '.' or '-' where it was cut.
 */
export function eventName(objectName: string, suffix: string): string {
  const room = MAX_EVENT_NAME - suffix.length - 1;
  let base = objectName.length > room ? objectName.slice(0, room) : objectName;
  base = base.replace(/[^a-z0-9]+$/, '');
  return `${base || 'x'}.${suffix}`;
}

export class EventRecorder {
  private readonly cache = new Map<string, Entry>();
  private readonly window: number;
  private readonly maxEntries: number;

  constructor(
    private readonly deps: EventRecorderDeps,
    private readonly options: EventRecorderOptions,
  ) {
    this.window = options.aggregateWindowMs ?? 10 * 60_000;
    this.maxEntries = options.maxCacheEntries ?? 4096;
  }

  /** Records an Event; resolves when it (and any repeats folded into it) has been written or given up. */
  event(involved: ObjectReference, type: EventType, reason: string, message: string): Promise<void> {
    const now = this.deps.clock.now();
    const namespace = involved.namespace ?? this.options.defaultNamespace ?? 'default';
    const key = JSON.stringify([involved.kind, involved.namespace ?? '', involved.name, involved.uid ?? '', type, reason, message]);
    let entry = this.cache.get(key);
    if (entry && now - entry.lastSeen > this.window) entry = undefined; // too old: start a new Event
    if (!entry) {
      entry = { name: undefined, namespace, count: 0, pending: 0, firstTimestamp: timestamp(now), lastSeen: now, chain: Promise.resolve() };
    }
    this.cache.delete(key); // re-insert to keep LRU order
    this.cache.set(key, entry);
    if (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
    entry.lastSeen = now;
    entry.pending++;
    const e = entry;
    e.chain = e.chain.then(() => this.flush(e, involved, type, reason, message));
    return e.chain;
  }

  normal(involved: ObjectReference, reason: string, message: string): Promise<void> {
    return this.event(involved, 'Normal', reason, message);
  }

  warning(involved: ObjectReference, reason: string, message: string): Promise<void> {
    return this.event(involved, 'Warning', reason, message);
  }

  private async flush(e: Entry, involved: ObjectReference, type: EventType, reason: string, message: string): Promise<void> {
    if (e.pending === 0) return; // folded into an earlier write
    const add = e.pending;
    e.pending = 0;
    const last = timestamp(e.lastSeen);
    try {
      if (e.name !== undefined) {
        try {
          await this.deps.api.patch(CoreResources.events, e.name, { type: 'merge', body: { count: e.count + add, lastTimestamp: last } }, e.namespace);
          e.count += add;
          return;
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err;
          // The Event expired (the API server's TTL); start a new one.
          e.name = undefined;
          e.count = 0;
          e.firstTimestamp = last;
        }
      }
      const name = eventName(involved.name, (BigInt(e.lastSeen) * 1_000_000n + BigInt(randomBytes(2).readUInt16BE())).toString(16));
      const body: CoreEvent = {
        metadata: { name, namespace: e.namespace },
        involvedObject: involved,
        reason,
        message,
        type,
        count: e.count + add,
        firstTimestamp: e.firstTimestamp,
        lastTimestamp: last,
        source: { component: this.options.component, ...(this.options.host !== undefined ? { host: this.options.host } : {}) },
        reportingComponent: this.options.component,
        ...(this.options.host !== undefined ? { reportingInstance: this.options.host } : {}),
      };
      await this.deps.api.create(CoreResources.events, body);
      e.name = name;
      e.count += add;
    } catch (err) {
      // Best effort: keep the repeats for the next write rather than dropping them silently.
      e.pending += add;
      this.deps.logger.warn({ err: err instanceof Error ? err.message : String(err), reason, object: `${involved.kind}/${involved.name}` }, 'recording event failed');
    }
  }
}
