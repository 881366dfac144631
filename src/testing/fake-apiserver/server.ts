/**
 * An in-process fake Kubernetes API server speaking real HTTP, so tests exercise the real
 * `@kubernetes/client-node` (its serializers, its ListWatch, its error shapes) instead of a mocked client.
 *
 * It keeps one global, monotonically increasing resourceVersion and a bounded event history per server:
 * a watch from resourceVersion N replays every later event, and a watch from before the compaction point
 * gets an ERROR event with code 410, as the real server does. Fault injection (dropped watches, failing
 * requests, latency, compaction) and a request log are exposed for tests and the operator benchmark.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { applyJsonPatch, applyMergePatch, PatchError } from './patch.js';
import { apiVersionOf, DEFAULT_RESOURCES, resourceKey, resourceTypesFromCrd, type ResourceType } from './resources.js';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector } from './selectors.js';
import { validateResourceSlice } from './resource-validation.js';

export interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    uid: string;
    resourceVersion: string;
    generation?: number;
    creationTimestamp: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    finalizers?: string[];
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'discovery';

export interface RequestLogEntry {
  readonly method: string;
  readonly verb: Verb;
  /** The URL path without the query string. */
  readonly path: string;
  readonly group?: string;
  readonly plural?: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly subresource?: string;
  /** The status the server answered with (watches: the status of the stream's head). */
  status: number;
}

export interface RequestMatch {
  method?: string;
  verb?: Verb;
  /** A substring of, or a pattern for, the URL path (no query string). */
  path?: string | RegExp;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  readonly rv: number;
  readonly key: string;
  readonly type: WatchEventType;
  readonly object: StoredObject;
  line?: string; // serialised once, shared by every watcher
}

interface Watcher {
  readonly key: string;
  readonly namespace: string | undefined;
  readonly matches: (o: StoredObject) => boolean;
  readonly res: ServerResponse;
  readonly bookmarks: boolean;
  readonly apiVersion: string;
  readonly kind: string;
}

interface Fault {
  readonly match: RequestMatch;
  remaining: number;
  readonly status: number;
}

/**
 * How every watch is answered while a watch fault is set (lists and other verbs still work):
 *  - `empty`: 200 with an empty body, ended at once (a load balancer closing long requests);
 *  - `gone`: 200 with one ERROR event of code 410, then EOF (a compacted etcd after an API server restart);
 *  - `status`: the HTTP status given (500: an API server failing; 403: the role lacks the `watch` verb).
 */
export type WatchFault = { readonly kind: 'empty' } | { readonly kind: 'gone' } | { readonly kind: 'status'; readonly status: number };

export interface FakeApiServerOptions {
  resources?: readonly ResourceType[];
  /** Events kept for watch replay; older resourceVersions get 410. Default 100,000. */
  historyLimit?: number;
  /** Send BOOKMARK events to watches that allow them this often (ms); 0 disables the timer. Default 0. */
  bookmarkIntervalMs?: number;
  /** Keep a per-request log (default true); counters are kept either way. */
  logRequests?: boolean;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

function parseRv(v: string | null | undefined): number | undefined {
  if (v === null || v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new HttpError(400, 'BadRequest', `invalid resourceVersion ${JSON.stringify(v)}`);
  return n;
}

function nsKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

/** The parts of an object whose change bumps metadata.generation. */
function specPart(o: Record<string, unknown>, statusSubresource: boolean): string {
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (k === 'metadata' || k === 'apiVersion' || k === 'kind') continue;
    if (statusSubresource && k === 'status') continue;
    rest[k] = v;
  }
  return JSON.stringify(rest);
}

export class FakeApiServer {
  private readonly types = new Map<string, ResourceType>(); // resourceKey -> type
  private readonly store = new Map<string, Map<string, StoredObject>>(); // resourceKey -> ns/name -> object
  private readonly history: HistoryEvent[] = [];
  private historyHead = 0; // index of the first live entry in `history` (compaction without O(n) shifts)
  private readonly watchers = new Set<Watcher>();
  private readonly faults: Fault[] = [];
  private readonly log: RequestLogEntry[] = [];
  private readonly counters = new Map<string, number>();
  private readonly writes = new Map<string, number>(); // "<group>/<plural>/<name>" -> writes
  private latency: { ms: number; match: RequestMatch | undefined } | undefined;
  private watchFaultMode: WatchFault | undefined;
  private rv = 0;
  /** Watches from a resourceVersion below this get 410 Gone. */
  private compactedRv = 0;
  private server: Server | undefined;
  private bookmarkTimer: ReturnType<typeof setInterval> | undefined;
  private port = 0;
  private readonly historyLimit: number;
  private readonly logRequests: boolean;
  private readonly bookmarkIntervalMs: number;

  constructor(options: FakeApiServerOptions = {}) {
    for (const t of options.resources ?? DEFAULT_RESOURCES) this.registerResource(t);
    this.historyLimit = options.historyLimit ?? 100_000;
    this.logRequests = options.logRequests ?? true;
    this.bookmarkIntervalMs = options.bookmarkIntervalMs ?? 0;
  }

  /** Starts listening on 127.0.0.1 on a random port. */
  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const s = new FakeApiServer(options);
    await s.listen();
    return s;
  }

  async listen(): Promise<void> {
    const server = createServer((req, res) => {
      void this.handle(req, res);
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    if (this.bookmarkIntervalMs > 0) {
      this.bookmarkTimer = setInterval(() => this.sendBookmarks(), this.bookmarkIntervalMs);
      this.bookmarkTimer.unref();
    }
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A KubeConfig for the real client-node pointing at this server. */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake-user', token: 'fake-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake-user', namespace: 'default' }],
      currentContext: 'fake',
    });
    return kc;
  }

  async close(): Promise<void> {
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    this.dropWatches({ abrupt: true });
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- registry and direct store access

  registerResource(t: ResourceType): void {
    const key = resourceKey(t);
    this.types.set(key, t);
    if (!this.store.has(key)) this.store.set(key, new Map());
  }

  get resourceVersion(): number {
    return this.rv;
  }

  private typeFor(group: string, version: string, plural: string): ResourceType {
    const t = this.types.get(resourceKey({ group, version, plural }));
    if (!t) throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${group}/${version} ${plural})`);
    return t;
  }

  /**
   * Stores an object as-is (status included), bypassing HTTP, the log and fault injection; emits ADDED or
   * MODIFIED like any write. For seeding fixtures such as Nodes with status.
   */
  seed(group: string, version: string, plural: string, obj: Record<string, unknown>): StoredObject {
    const t = this.typeFor(group, version, plural);
    const meta = (obj['metadata'] ?? {}) as Record<string, unknown>;
    const namespace = t.namespaced ? ((meta['namespace'] as string | undefined) ?? 'default') : undefined;
    const existing = this.store.get(resourceKey(t))?.get(nsKey(namespace, String(meta['name'])));
    if (existing) {
      return this.commit(t, { ...structuredClone(obj), metadata: { ...existing.metadata, ...structuredClone(meta) } } as StoredObject, 'MODIFIED');
    }
    return this.insert(t, structuredClone(obj), namespace);
  }

  /** A copy of a stored object, or undefined. */
  object(group: string, version: string, plural: string, name: string, namespace?: string): StoredObject | undefined {
    const o = this.store.get(resourceKey({ group, version, plural }))?.get(nsKey(namespace, name));
    return o ? structuredClone(o) : undefined;
  }

  objects(group: string, version: string, plural: string, namespace?: string): StoredObject[] {
    const m = this.store.get(resourceKey({ group, version, plural }));
    if (!m) return [];
    return [...m.values()].filter((o) => namespace === undefined || o.metadata.namespace === namespace).map((o) => structuredClone(o));
  }

  // ---------------------------------------------------------------- fault injection

  /** Ends every open watch. Graceful (the default) ends the response; abrupt destroys the socket. */
  dropWatches(opts: { abrupt?: boolean } = {}): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      if (opts.abrupt) w.res.destroy();
      else w.res.end();
    }
    return n;
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  /** The next `count` requests matching `match` are answered with `status` (default 500). */
  failNext(match: RequestMatch, count = 1, status = 500): void {
    this.faults.push({ match, remaining: count, status });
  }

  clearFaults(): void {
    this.faults.length = 0;
    this.watchFaultMode = undefined;
  }

  /** Answers every watch (all resources) as `fault` says until cleared (`undefined` or clearFaults). */
  setWatchFault(fault: WatchFault | undefined): void {
    this.watchFaultMode = fault;
  }

  /** Delays every matching request (all when `match` is omitted) by `ms`; 0 clears. */
  setLatency(ms: number, match?: RequestMatch): void {
    this.latency = ms > 0 ? { ms, match } : undefined;
  }

  /** Forgets the whole watch history: every watch from an older resourceVersion now gets 410. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history.length = 0;
    this.historyHead = 0;
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watch that allowed bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      w.res.write(
        JSON.stringify({ type: 'BOOKMARK', object: { apiVersion: w.apiVersion, kind: w.kind, metadata: { resourceVersion: String(this.rv) } } }) + '\n',
      );
    }
  }

  // ---------------------------------------------------------------- request log

  /** Log entries matching `match` (all when omitted). */
  requests(match?: RequestMatch): RequestLogEntry[] {
    return match ? this.log.filter((e) => this.matches(match, e.method, e.verb, e.path)) : [...this.log];
  }

  /** Request counts keyed `"<verb> <group>/<plural>[/<subresource>]"`, e.g. `"patch handoff.dev/nodegpupassthroughs/status"`. */
  counts(): Record<string, number> {
    return Object.fromEntries(this.counters);
  }

  /**
   * Write requests (update, patch, delete; status included) per object, keyed by object name, summed over
   * the resources named (all when omitted): the benchmark's "writes per node" with
   * `writesPerName(['nodes', 'nodegpupassthroughs'])`. Creates are counted separately in `counts()`.
   */
  writesPerName(plurals?: readonly string[]): Map<string, number> {
    const out = new Map<string, number>();
    for (const [k, n] of this.writes) {
      const [, plural, name] = k.split('/') as [string, string, string];
      if (plurals && !plurals.includes(plural)) continue;
      out.set(name, (out.get(name) ?? 0) + n);
    }
    return out;
  }

  resetRequestLog(): void {
    this.log.length = 0;
    this.counters.clear();
    this.writes.clear();
  }

  // ---------------------------------------------------------------- HTTP

  private matches(m: RequestMatch, method: string, verb: Verb, path: string): boolean {
    if (m.method && m.method.toUpperCase() !== method) return false;
    if (m.verb && m.verb !== verb) return false;
    if (m.path !== undefined) {
      if (typeof m.path === 'string' ? !path.includes(m.path) : !m.path.test(path)) return false;
    }
    return true;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = (req.method ?? 'GET').toUpperCase();
    let entry: RequestLogEntry = { method, verb: 'discovery', path: url.pathname, status: 0 };
    try {
      const body = await readBody(req);
      const route = this.route(url.pathname);
      const isWatch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
      const verb: Verb = !route
        ? 'discovery'
        : method === 'GET'
          ? isWatch
            ? 'watch'
            : route.name === undefined
              ? 'list'
              : 'get'
          : method === 'POST'
            ? 'create'
            : method === 'PUT'
              ? 'update'
              : method === 'PATCH'
                ? 'patch'
                : method === 'DELETE'
                  ? 'delete'
                  : 'get';
      entry = {
        method,
        verb,
        path: url.pathname,
        status: 0,
        ...(route ? { group: route.group, plural: route.plural } : {}),
        ...(route?.namespace !== undefined ? { namespace: route.namespace } : {}),
        ...(route?.name !== undefined ? { name: route.name } : {}),
        ...(route?.subresource !== undefined ? { subresource: route.subresource } : {}),
      };
      const ckey = `${verb} ${route ? `${route.group}/${route.plural}${route.subresource ? `/${route.subresource}` : ''}` : url.pathname}`;
      this.counters.set(ckey, (this.counters.get(ckey) ?? 0) + 1);
      if (this.logRequests) this.log.push(entry);
      if (route?.name !== undefined && (verb === 'update' || verb === 'patch' || verb === 'delete')) {
        const wkey = `${route.group}/${route.plural}/${route.name}`;
        this.writes.set(wkey, (this.writes.get(wkey) ?? 0) + 1);
      }

      if (this.latency && (!this.latency.match || this.matches(this.latency.match, method, verb, url.pathname))) {
        await new Promise((r) => setTimeout(r, this.latency?.ms ?? 0));
      }
      const fault = this.faults.find((f) => f.remaining > 0 && this.matches(f.match, method, verb, url.pathname));
      if (fault) {
        fault.remaining--;
        throw faultError(fault.status, verb, route);
      }
      const wf = this.watchFaultMode;
      if (wf && verb === 'watch') {
        if (wf.kind === 'status') throw faultError(wf.status, verb, route);
        entry.status = 200;
        res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
        if (wf.kind === 'gone') {
          res.end(JSON.stringify({ type: 'ERROR', object: statusBody(410, 'Expired', `too old resource version: ${url.searchParams.get('resourceVersion') ?? ''} (${this.rv})`) }) + '\n');
        } else res.end();
        return;
      }
      if (!route) return this.discovery(url.pathname, entry, res);
      const t = this.typeFor(route.group, route.version, route.plural);
      if (t.namespaced && route.name !== undefined && route.namespace === undefined) {
        throw new HttpError(404, 'NotFound', `${t.plural} is namespaced`);
      }
      if (!t.namespaced && route.namespace !== undefined) throw new HttpError(404, 'NotFound', `${t.plural} is cluster-scoped`);
      if (route.subresource !== undefined && (route.subresource !== 'status' || !t.statusSubresource)) {
        throw new HttpError(404, 'NotFound', `no subresource ${route.subresource} on ${t.plural}`);
      }
      const status = route.subresource === 'status';
      switch (verb) {
        case 'watch':
          return this.watch(t, route.namespace, url.searchParams, entry, res);
        case 'list':
          return this.reply(res, entry, 200, this.list(t, route.namespace, url.searchParams));
        case 'get':
          return this.reply(res, entry, 200, this.get(t, route.namespace, route.name as string));
        case 'create': {
          if (route.name !== undefined) throw new HttpError(405, 'MethodNotAllowed', 'POST to a named resource');
          return this.reply(res, entry, 201, this.create(t, route.namespace, parseJson(body)));
        }
        case 'update':
          return this.reply(res, entry, 200, this.update(t, route.namespace, route.name, parseJson(body), status));
        case 'patch':
          return this.reply(res, entry, 200, this.patch(t, route.namespace, route.name, body, req.headers['content-type'] ?? '', status));
        case 'delete':
          return this.reply(res, entry, 200, this.remove(t, route.namespace, route.name));
        default:
          throw new HttpError(405, 'MethodNotAllowed', `method ${method} not allowed`);
      }
    } catch (err) {
      if (err instanceof HttpError) return this.reply(res, entry, err.status, statusBody(err.status, err.reason, err.message));
      if (err instanceof PatchError) return this.reply(res, entry, err.status, statusBody(err.status, 'Invalid', err.message));
      const message = err instanceof Error ? err.message : String(err);
      return this.reply(res, entry, 500, statusBody(500, 'InternalError', message));
    }
  }

  private reply(res: ServerResponse, entry: RequestLogEntry, status: number, body: unknown): void {
    entry.status = status;
    if (res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private route(
    pathname: string,
  ): { group: string; version: string; plural: string; namespace?: string; name?: string; subresource?: string } | undefined {
    const seg = pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
    let group: string;
    let version: string;
    let rest: string[];
    if (seg[0] === 'api' && seg.length >= 3) {
      group = '';
      version = seg[1] as string;
      rest = seg.slice(2);
    } else if (seg[0] === 'apis' && seg.length >= 4) {
      group = seg[1] as string;
      version = seg[2] as string;
      rest = seg.slice(3);
    } else return undefined;
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [plural, name, subresource] = rest;
    if (plural === undefined || rest.length > 3) return undefined;
    return {
      group,
      version,
      plural,
      ...(namespace !== undefined ? { namespace } : {}),
      ...(name !== undefined ? { name } : {}),
      ...(subresource !== undefined ? { subresource } : {}),
    };
  }

  private discovery(pathname: string, entry: RequestLogEntry, res: ServerResponse): void {
    const types = [...this.types.values()];
    const resourcesOf = (group: string, version: string): unknown[] =>
      types
        .filter((t) => t.group === group && t.version === version)
        .flatMap((t) => [
          {
            name: t.plural,
            singularName: t.kind.toLowerCase(),
            namespaced: t.namespaced,
            kind: t.kind,
            verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
            ...(t.shortNames ? { shortNames: t.shortNames } : {}),
          },
          ...(t.statusSubresource ? [{ name: `${t.plural}/status`, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: ['get', 'patch', 'update'] }] : []),
        ]);
    const seg = pathname.split('/').filter((s) => s !== '');
    if (seg.length === 1 && seg[0] === 'api') return this.reply(res, entry, 200, { kind: 'APIVersions', versions: ['v1'] });
    if (seg.length === 2 && seg[0] === 'api') {
      return this.reply(res, entry, 200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: seg[1], resources: resourcesOf('', seg[1] as string) });
    }
    if (seg.length === 1 && seg[0] === 'apis') {
      const groups = new Map<string, Set<string>>();
      for (const t of types) if (t.group !== '') groups.set(t.group, (groups.get(t.group) ?? new Set()).add(t.version));
      return this.reply(res, entry, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [...groups].map(([name, vs]) => ({
          name,
          versions: [...vs].map((v) => ({ groupVersion: `${name}/${v}`, version: v })),
          preferredVersion: { groupVersion: `${name}/${[...vs][0]}`, version: [...vs][0] },
        })),
      });
    }
    if (seg.length === 3 && seg[0] === 'apis') {
      const list = resourcesOf(seg[1] as string, seg[2] as string);
      if (list.length === 0) return this.reply(res, entry, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
      return this.reply(res, entry, 200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: `${seg[1]}/${seg[2]}`, resources: list });
    }
    return this.reply(res, entry, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
  }

  // ---------------------------------------------------------------- verbs

  private bucket(t: ResourceType): Map<string, StoredObject> {
    return this.store.get(resourceKey(t)) as Map<string, StoredObject>;
  }

  private mustGet(t: ResourceType, namespace: string | undefined, name: string | undefined): StoredObject {
    if (name === undefined) throw new HttpError(405, 'MethodNotAllowed', 'a name is required');
    const o = this.bucket(t).get(nsKey(namespace, name));
    if (!o) throw new HttpError(404, 'NotFound', `${t.plural}${t.group ? `.${t.group}` : ''} "${name}" not found`);
    return o;
  }

  private get(t: ResourceType, namespace: string | undefined, name: string): StoredObject {
    return this.mustGet(t, namespace, name);
  }

  private selector(t: ResourceType, namespace: string | undefined, q: URLSearchParams): (o: StoredObject) => boolean {
    let labels;
    let fields;
    try {
      labels = parseLabelSelector(q.get('labelSelector'));
      fields = parseFieldSelector(q.get('fieldSelector'));
    } catch (err) {
      throw new HttpError(400, 'BadRequest', (err as Error).message);
    }
    return (o) =>
      (namespace === undefined || o.metadata.namespace === namespace) && matchesLabels(labels, o.metadata.labels) && matchesFields(fields, o.metadata);
  }

  private list(t: ResourceType, namespace: string | undefined, q: URLSearchParams): unknown {
    const match = this.selector(t, namespace, q);
    const items = [...this.bucket(t).values()].filter(match);
    return { apiVersion: apiVersionOf(t), kind: `${t.kind}List`, metadata: { resourceVersion: String(this.rv) }, items };
  }

  private create(t: ResourceType, namespace: string | undefined, body: unknown): StoredObject {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'BadRequest', 'body must be an object');
    const obj = body as Record<string, unknown>;
    const meta = (obj['metadata'] ?? {}) as Record<string, unknown>;
    if (t.namespaced) {
      if (namespace === undefined) throw new HttpError(404, 'NotFound', `${t.plural} must be created in a namespace`);
      if (meta['namespace'] !== undefined && meta['namespace'] !== namespace) {
        throw new HttpError(400, 'BadRequest', 'the namespace of the object does not match the namespace of the request');
      }
    }
    if (t.statusSubresource) delete obj['status'];
    this.validate(t, obj, undefined);
    return this.insert(t, obj, namespace);
  }

  /** Type-specific validation the real API server does (422 Invalid with the field errors). */
  private validate(t: ResourceType, obj: Record<string, unknown>, old: Record<string, unknown> | undefined): void {
    if (t.group === 'resource.k8s.io' && t.plural === 'resourceslices') {
      const errs = validateResourceSlice(obj, old);
      if (errs.length > 0) {
        const name = ((obj['metadata'] ?? {}) as { name?: string }).name ?? '';
        throw new HttpError(422, 'Invalid', `ResourceSlice.resource.k8s.io "${name}" is invalid: ${errs.length === 1 ? errs[0] : `[${errs.join(', ')}]`}`);
      }
    }
  }

  private insert(t: ResourceType, obj: Record<string, unknown>, namespace: string | undefined): StoredObject {
    const meta = { ...((obj['metadata'] ?? {}) as Record<string, unknown>) };
    let name = meta['name'];
    if ((name === undefined || name === '') && typeof meta['generateName'] === 'string') {
      let generated: string;
      do generated = `${meta['generateName']}${randomUUID().slice(0, 5)}`;
      while (this.bucket(t).has(nsKey(namespace, generated)));
      name = generated;
    }
    if (typeof name !== 'string' || name === '') throw new HttpError(422, 'Invalid', 'metadata.name: Required value');
    if (this.bucket(t).has(nsKey(namespace, name))) {
      throw new HttpError(409, 'AlreadyExists', `${t.plural}${t.group ? `.${t.group}` : ''} "${name}" already exists`);
    }
    for (const k of ['resourceVersion', 'uid', 'creationTimestamp', 'deletionTimestamp', 'generation']) delete meta[k];
    const stored = {
      ...obj,
      apiVersion: apiVersionOf(t),
      kind: t.kind,
      metadata: {
        ...meta,
        name,
        ...(namespace !== undefined ? { namespace } : {}),
        uid: randomUUID(),
        resourceVersion: '0',
        generation: 1,
        creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      },
    } as StoredObject;
    if (!t.namespaced) delete stored.metadata.namespace;
    return this.commit(t, stored, 'ADDED');
  }

  /** Applies a write to `current` following the subresource rules, checks preconditions, and commits it. */
  private write(t: ResourceType, current: StoredObject, proposed: unknown, status: boolean): StoredObject {
    if (typeof proposed !== 'object' || proposed === null || Array.isArray(proposed)) throw new HttpError(400, 'BadRequest', 'body must be an object');
    const p = proposed as Record<string, unknown>;
    const pmeta = (p['metadata'] ?? {}) as Record<string, unknown>;
    if (pmeta['name'] !== undefined && pmeta['name'] !== current.metadata.name) {
      throw new HttpError(400, 'BadRequest', 'the name of the object does not match the name in the URL');
    }
    const rv = pmeta['resourceVersion'];
    if (rv !== undefined && rv !== null && rv !== '' && String(rv) !== current.metadata.resourceVersion) {
      throw new HttpError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${t.plural} "${current.metadata.name}": the object has been modified; please apply your changes to the latest version and try again`,
      );
    }
    let next: StoredObject;
    if (status) {
      // Writes to /status change only the status stanza.
      next = { ...structuredClone(current), status: p['status'] } as StoredObject;
      if (p['status'] === undefined) delete next['status'];
    } else {
      const meta = { ...pmeta };
      // Server-owned metadata always comes from the stored object.
      for (const k of ['uid', 'creationTimestamp', 'deletionTimestamp', 'generation', 'resourceVersion', 'namespace']) delete meta[k];
      next = { ...p, apiVersion: current.apiVersion, kind: current.kind, metadata: { ...meta, ...pick(current.metadata) } } as StoredObject;
      if (t.statusSubresource) {
        if (current['status'] === undefined) delete next['status'];
        else next['status'] = structuredClone(current['status']);
      }
      if (specPart(next, t.statusSubresource) !== specPart(current, t.statusSubresource)) {
        next.metadata.generation = (current.metadata.generation ?? 1) + 1;
      }
    }
    if (!status) this.validate(t, next, current);
    if (stableStringify(next) === stableStringify(current)) return current; // no-op writes do not bump resourceVersion
    if (current.metadata.deletionTimestamp !== undefined && (next.metadata.finalizers ?? []).length === 0) {
      this.commitDelete(t, next);
      return next;
    }
    return this.commit(t, next, 'MODIFIED');
  }

  private update(t: ResourceType, namespace: string | undefined, name: string | undefined, body: unknown, status: boolean): StoredObject {
    return this.write(t, this.mustGet(t, namespace, name), body, status);
  }

  private patch(
    t: ResourceType,
    namespace: string | undefined,
    name: string | undefined,
    body: string,
    contentType: string,
    status: boolean,
  ): StoredObject {
    const current = this.mustGet(t, namespace, name);
    const patch = parseJson(body);
    const ct = contentType.split(';')[0]?.trim();
    let proposed: unknown;
    if (ct === 'application/json-patch+json') proposed = applyJsonPatch(current, patch);
    // Strategic merge patch is a merge patch for custom resources; the fake uses the same for core types.
    else if (ct === 'application/merge-patch+json' || ct === 'application/strategic-merge-patch+json') proposed = applyMergePatch(current, patch);
    else throw new HttpError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format: ${contentType}`);
    // A patch carries a resourceVersion precondition only if the patch itself names one.
    const patchRv = ((patch as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion ?? undefined) as unknown;
    const p = proposed as Record<string, unknown>;
    const meta = { ...((p['metadata'] ?? {}) as Record<string, unknown>) };
    if (ct === 'application/json-patch+json' || patchRv === undefined) meta['resourceVersion'] = current.metadata.resourceVersion;
    return this.write(t, current, { ...p, metadata: meta }, status);
  }

  private remove(t: ResourceType, namespace: string | undefined, name: string | undefined): unknown {
    const current = this.mustGet(t, namespace, name);
    if ((current.metadata.finalizers ?? []).length > 0) {
      if (current.metadata.deletionTimestamp !== undefined) return current;
      const next = structuredClone(current);
      next.metadata.deletionTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      return this.commit(t, next, 'MODIFIED');
    }
    this.commitDelete(t, current);
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name: current.metadata.name, kind: t.plural, uid: current.metadata.uid } };
  }

  // ---------------------------------------------------------------- commit, history and watch fan-out

  private commit(t: ResourceType, obj: StoredObject, type: WatchEventType): StoredObject {
    this.rv++;
    obj.metadata.resourceVersion = String(this.rv);
    if (type === 'ADDED' && obj.kind === 'CustomResourceDefinition') for (const rt of resourceTypesFromCrd(obj)) this.registerResource(rt);
    this.bucket(t).set(nsKey(obj.metadata.namespace, obj.metadata.name), obj);
    this.record(t, obj, type);
    return obj;
  }

  private commitDelete(t: ResourceType, obj: StoredObject): void {
    this.rv++;
    const gone = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.rv) } };
    this.bucket(t).delete(nsKey(obj.metadata.namespace, obj.metadata.name));
    this.record(t, gone, 'DELETED');
  }

  private record(t: ResourceType, object: StoredObject, type: WatchEventType): void {
    const ev: HistoryEvent = { rv: this.rv, key: resourceKey(t), type, object };
    this.history.push(ev);
    if (this.history.length - this.historyHead > this.historyLimit) {
      const dropped = this.history[this.historyHead] as HistoryEvent;
      this.compactedRv = dropped.rv;
      this.historyHead++;
      if (this.historyHead > 4096 && this.historyHead * 2 > this.history.length) {
        this.history.splice(0, this.historyHead);
        this.historyHead = 0;
      }
    }
    for (const w of this.watchers) if (w.key === ev.key && w.matches(object)) this.send(w, ev);
  }

  private send(w: Watcher, ev: HistoryEvent): void {
    ev.line ??= JSON.stringify({ type: ev.type, object: ev.object }) + '\n';
    w.res.write(ev.line);
  }

  private watch(t: ResourceType, namespace: string | undefined, q: URLSearchParams, entry: RequestLogEntry, res: ServerResponse): void {
    const from = parseRv(q.get('resourceVersion'));
    const matches = this.selector(t, namespace, q);
    entry.status = 200;
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const key = resourceKey(t);
    if (from !== undefined && from !== 0 && from < this.compactedRv) {
      // What the real server does for a too-old resourceVersion: a 200 stream with one ERROR event, then EOF.
      res.end(
        JSON.stringify({
          type: 'ERROR',
          object: statusBody(410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`),
        }) + '\n',
      );
      return;
    }
    const w: Watcher = {
      key,
      namespace,
      matches,
      res,
      bookmarks: q.get('allowWatchBookmarks') === 'true',
      apiVersion: apiVersionOf(t),
      kind: t.kind,
    };
    if (from === undefined || from === 0) {
      // No resourceVersion: synthetic ADDED events for the current state, then live events.
      for (const o of this.bucket(t).values()) if (matches(o)) res.write(JSON.stringify({ type: 'ADDED', object: o }) + '\n');
    } else {
      for (let i = this.historyHead; i < this.history.length; i++) {
        const ev = this.history[i] as HistoryEvent;
        if (ev.rv > from && ev.key === key && matches(ev.object)) this.send(w, ev);
      }
    }
    this.watchers.add(w);
    const timeout = Number(q.get('timeoutSeconds') ?? '0');
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (timeout > 0) timer = setTimeout(() => res.end(), timeout * 1000);
    res.on('close', () => {
      if (timer) clearTimeout(timer);
      this.watchers.delete(w);
    });
  }
}

function pick(meta: StoredObject['metadata']): Record<string, unknown> {
  const out: Record<string, unknown> = {
    uid: meta.uid,
    creationTimestamp: meta.creationTimestamp,
    resourceVersion: meta.resourceVersion,
    generation: meta.generation ?? 1,
  };
  if (meta.namespace !== undefined) out['namespace'] = meta.namespace;
  if (meta.deletionTimestamp !== undefined) out['deletionTimestamp'] = meta.deletionTimestamp;
  return out;
}

/** JSON with sorted keys, so a write that only reorders keys counts as a no-op. */
function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableStringify(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The error an injected fault answers with, worded as the real API server words it. */
function faultError(status: number, verb: Verb, route: { group: string; plural: string } | undefined): HttpError {
  if (status === 403) {
    const what = route ? `resource "${route.plural}" in API group "${route.group}"` : 'this path';
    return new HttpError(
      403,
      'Forbidden',
      `${route ? `${route.plural}${route.group ? `.${route.group}` : ''}` : 'path'} is forbidden: User "system:serviceaccount:test:test" cannot ${verb} ${what} at the cluster scope`,
    );
  }
  return new HttpError(status, status === 500 ? 'InternalError' : 'Injected', `injected fault (${status})`);
}

function statusBody(code: number, reason: string, message: string): unknown {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new HttpError(400, 'BadRequest', 'the request body is not valid JSON');
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
