/**
 * A small KubeApi adapter over node:http/https, for the node agent. client-node's generated model graph
 * costs the agent ~75 MiB of RSS on every node; the agent needs a handful of verbs on two resources and
 * one watch, which plain HTTP does in a few lines. The operator keeps client-node (informers, leases).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { KubeApiError } from '../core/errors.js';
import {
  apiVersionOf,
  collectionPath,
  describeResource,
  errorForStatus,
  statusMessage,
  type KubeApi,
  type KubeList,
  type KubeObject,
  type ListOptions,
  type Patch,
  type ResourceRef,
} from './port.js';

export interface LightKubeConfig {
  /** API server base URL, e.g. `https://10.96.0.1:443`. */
  readonly server: string;
  /** Bearer token, read per request (bound service-account tokens are rotated on disk). */
  readonly token?: () => string | undefined;
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly insecureSkipTlsVerify?: boolean;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';

export interface WatchOptions {
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly resourceVersion?: string;
  readonly timeoutSeconds?: number;
}

interface Response {
  readonly status: number;
  readonly body: unknown;
}

export class HttpKubeApi implements KubeApi {
  private readonly base: URL;
  private readonly agent: http.Agent;

  constructor(private readonly deps: { config: LightKubeConfig; requestTimeoutMs?: number }) {
    this.base = new URL(deps.config.server);
    const c = deps.config;
    this.agent =
      this.base.protocol === 'https:'
        ? new https.Agent({ keepAlive: true, ca: c.ca, cert: c.cert, key: c.key, rejectUnauthorized: !c.insecureSkipTlsVerify })
        : new http.Agent({ keepAlive: true });
  }

  async get<T extends KubeObject>(res: ResourceRef, name: string, namespace?: string): Promise<T> {
    return (await this.call('get', describeResource(res, name, namespace), 'GET', this.objectPath(res, name, namespace))) as T;
  }

  async list<T extends KubeObject>(res: ResourceRef, options: ListOptions = {}): Promise<KubeList<T>> {
    const q = new URLSearchParams();
    if (options.labelSelector !== undefined) q.set('labelSelector', options.labelSelector);
    if (options.fieldSelector !== undefined) q.set('fieldSelector', options.fieldSelector);
    if (options.limit !== undefined) q.set('limit', String(options.limit));
    if (options.continueToken !== undefined) q.set('continue', options.continueToken);
    const path = `${collectionPath(res, options.namespace)}${q.size ? `?${q}` : ''}`;
    const list = (await this.call('list', describeResource(res, undefined, options.namespace), 'GET', path)) as KubeList<T>;
    list.metadata ??= {};
    list.items ??= [];
    return list;
  }

  async create<T extends KubeObject>(res: ResourceRef, obj: T): Promise<T> {
    const ns = obj.metadata?.namespace;
    const body = { apiVersion: apiVersionOf(res), kind: res.kind, ...obj };
    return (await this.call('create', describeResource(res, obj.metadata?.name, ns), 'POST', collectionPath(res, ns), body)) as T;
  }

  async replace<T extends KubeObject>(res: ResourceRef, obj: T): Promise<T> {
    return this.put(res, obj, '');
  }

  async replaceStatus<T extends KubeObject>(res: ResourceRef, obj: T): Promise<T> {
    return this.put(res, obj, '/status');
  }

  async patch<T extends KubeObject>(res: ResourceRef, name: string, patch: Patch, namespace?: string): Promise<T> {
    return this.doPatch(res, name, patch, namespace, '');
  }

  async patchStatus<T extends KubeObject>(res: ResourceRef, name: string, patch: Patch, namespace?: string): Promise<T> {
    return this.doPatch(res, name, patch, namespace, '/status');
  }

  async delete(res: ResourceRef, name: string, namespace?: string): Promise<void> {
    await this.call('delete', describeResource(res, name, namespace), 'DELETE', this.objectPath(res, name, namespace));
  }

  /**
   * Streams watch events until the server ends the stream (resolves) or fails (rejects; a 410 — in the
   * status or as an ERROR event — rejects with ResourceExpiredError so the caller relists).
   */
  watch(res: ResourceRef, opts: WatchOptions, onEvent: (type: WatchEventType, obj: KubeObject) => void, signal?: AbortSignal): Promise<void> {
    const q = new URLSearchParams({ watch: 'true', allowWatchBookmarks: 'true' });
    if (opts.labelSelector !== undefined) q.set('labelSelector', opts.labelSelector);
    if (opts.resourceVersion !== undefined) q.set('resourceVersion', opts.resourceVersion);
    if (opts.timeoutSeconds !== undefined) q.set('timeoutSeconds', String(opts.timeoutSeconds));
    const what = describeResource(res, undefined, opts.namespace);
    return new Promise<void>((resolve, reject) => {
      // Settles once; removes the abort listener and ends the request, so nothing outlives the watch
      // (a listener left on a long-lived signal kept every past request alive: issue 17).
      let settled = false;
      const finish = (err?: unknown, cleanEnd = false): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        // A stream that ended cleanly leaves its socket to the keep-alive pool; anything else is cut.
        if (!cleanEnd && !req.destroyed) req.destroy();
        if (err === undefined) resolve();
        else reject(err instanceof Error ? err : new KubeApiError(`watch ${what}: ${String(err)}`, undefined));
      };
      const onAbort = (): void => finish();
      const req = this.send('GET', `${collectionPath(res, opts.namespace)}?${q}`, undefined, undefined, (rsp) => {
        if ((rsp.statusCode ?? 0) >= 300) {
          collect(rsp).then(
            (text) => finish(errorForStatus(rsp.statusCode ?? 0, `watch ${what}: ${statusMessage(text) ?? `HTTP ${rsp.statusCode}`}`, 'watch')),
            (err: unknown) => finish(err),
          );
          return;
        }
        let buf = '';
        rsp.setEncoding('utf8');
        rsp.on('data', (chunk: string) => {
          if (settled) return;
          buf += chunk;
          let nl: number;
          while (!settled && (nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            let ev: { type?: string; object?: KubeObject & { code?: number; message?: string } };
            try {
              ev = JSON.parse(line) as typeof ev;
            } catch (err) {
              return finish(new KubeApiError(`watch ${what}: undecodable event`, undefined, { cause: err }));
            }
            if (ev.type === 'ERROR') {
              const code = ev.object?.code ?? 500;
              return finish(errorForStatus(code, `watch ${what}: ${ev.object?.message ?? `code ${code}`}`, 'watch'));
            }
            if (ev.object && (ev.type === 'ADDED' || ev.type === 'MODIFIED' || ev.type === 'DELETED' || ev.type === 'BOOKMARK')) onEvent(ev.type, ev.object);
          }
        });
        rsp.on('end', () => finish(undefined, true));
        rsp.on('error', (err) => finish(new KubeApiError(`watch ${what}: ${err.message}`, undefined, { cause: err })));
        // A connection cut mid-stream closes without 'end': that is a failure, not a clean end.
        rsp.on('close', () => finish(rsp.complete ? undefined : new KubeApiError(`watch ${what}: connection closed`, undefined)));
      });
      req.on('error', (err) => finish(new KubeApiError(`watch ${what}: ${err.message}`, undefined, { cause: err })));
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {
    this.agent.destroy();
  }

  private objectPath(res: ResourceRef, name: string, namespace: string | undefined): string {
    if (res.namespaced && !namespace) throw new KubeApiError(`${res.plural} is namespaced: a namespace is required`, undefined);
    return `${collectionPath(res, namespace)}/${encodeURIComponent(name)}`;
  }

  private async put<T extends KubeObject>(res: ResourceRef, obj: T, sub: '' | '/status'): Promise<T> {
    const name = obj.metadata?.name;
    if (!name) throw new KubeApiError(`replace ${res.plural}: metadata.name is required`, undefined);
    const body = { apiVersion: apiVersionOf(res), kind: res.kind, ...obj };
    const path = `${this.objectPath(res, name, obj.metadata?.namespace)}${sub}`;
    return (await this.call(sub ? 'replace status of' : 'replace', describeResource(res, name, obj.metadata?.namespace), 'PUT', path, body)) as T;
  }

  private async doPatch<T extends KubeObject>(res: ResourceRef, name: string, patch: Patch, namespace: string | undefined, sub: '' | '/status'): Promise<T> {
    const contentType = patch.type === 'merge' ? 'application/merge-patch+json' : 'application/json-patch+json';
    const body = patch.type === 'merge' ? patch.body : patch.ops;
    const path = `${this.objectPath(res, name, namespace)}${sub}`;
    return (await this.call(sub ? 'patch status of' : 'patch', describeResource(res, name, namespace), 'PATCH', path, body, contentType)) as T;
  }

  private async call(verb: string, what: string, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<unknown> {
    let rsp: Response;
    try {
      rsp = await new Promise<Response>((resolve, reject) => {
        const req = this.send(method, path, body, contentType, (r) => {
          collect(r).then((text) => {
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              // a non-JSON body (proxy error page): keep the text for the message
            }
            resolve({ status: r.statusCode ?? 0, body: parsed });
          }, reject);
        });
        req.setTimeout(this.deps.requestTimeoutMs ?? 30_000, () => req.destroy(new Error('request timed out')));
        req.on('error', reject);
      });
    } catch (err) {
      throw new KubeApiError(`${verb} ${what}: ${(err as Error).message}`, undefined, { cause: err });
    }
    if (rsp.status >= 300) throw errorForStatus(rsp.status, `${verb} ${what}: ${statusMessage(rsp.body) ?? `HTTP ${rsp.status}`}`, verb);
    return rsp.body;
  }

  private send(method: string, path: string, body: unknown, contentType: string | undefined, onResponse: (r: http.IncomingMessage) => void): http.ClientRequest {
    const url = new URL(path, this.base);
    const token = this.deps.config.token?.();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: http.OutgoingHttpHeaders = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (payload !== undefined) {
      headers['Content-Type'] = contentType ?? 'application/json';
      headers['Content-Length'] = Buffer.byteLength(payload);
    }
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.request(url, { method, headers, agent: this.agent }, onResponse);
    req.end(payload);
    return req;
  }
}

function collect(r: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    r.setEncoding('utf8');
    r.on('data', (c: string) => (text += c));
    r.on('end', () => resolve(text));
    r.on('error', reject);
  });
}
