/**
 * The narrow Kubernetes API port the operator and the agent use, plus its adapter over client-node.
 *
 * Objects cross this port as plain JSON (no client-node model classes, no Date conversion), addressed by
 * group/version/plural so custom resources and core types look the same. client-node's `ApiException`
 * becomes our typed errors at this boundary: 404 → NotFoundError, 409 → ConflictError (AlreadyExistsError
 * for a create), 410 → ResourceExpiredError (the caller must relist), anything else → KubeApiError.
 */
import {
  ApiException,
  CustomObjectsApi,
  Observable,
  type ConfigurationOptions,
  type KubeConfig,
  type ObservableMiddleware,
} from '@kubernetes/client-node';
import { KubeApiError } from '../core/errors.js';
import { KeepAliveAgents } from './keep-alive-agents.js';
import {
  apiVersionOf,
  describeResource as describe,
  errorForStatus,
  statusMessage,
  type KubeApi,
  type KubeList,
  type KubeObject,
  type ListOptions,
  type Patch,
  type ResourceRef,
} from './port.js';

export * from './port.js';

/** Maps a client-node failure (ApiException or a transport error) to our typed errors. */
export function toKubeError(err: unknown, what: string, verb: string): Error {
  if (err instanceof ApiException) {
    const code = err.code as number;
    const detail = statusMessage(err.body) ?? `HTTP ${code}`;
    return errorForStatus(code, `${verb} ${what}: ${detail}`, verb, err);
  }
  const message = err instanceof Error ? err.message : String(err);
  return new KubeApiError(`${verb} ${what}: ${message}`, undefined, { cause: err });
}

export interface ClientNodeKubeApiDeps {
  kubeConfig: KubeConfig;
  /** The connection pool; one per process is enough (default: a new one). */
  agents?: KeepAliveAgents;
}

/**
 * KubeApi over client-node's CustomObjectsApi, which returns plain JSON for any group/version/plural.
 * Core resources (group '') use the same calls: a request middleware rewrites `/apis//v1/…` to `/api/v1/…`,
 * which keeps one code path and no model-class (de)serialisation for nodes and events.
 */
export class ClientNodeKubeApi implements KubeApi {
  private readonly custom: CustomObjectsApi;
  private readonly agents: KeepAliveAgents;

  constructor(deps: ClientNodeKubeApiDeps) {
    this.custom = deps.kubeConfig.makeApiClient(CustomObjectsApi);
    this.agents = deps.agents ?? new KeepAliveAgents();
  }

  /** Closes the pooled API-server connections. */
  close(): void {
    this.agents.destroy();
  }

  private options(res: ResourceRef, contentType?: string): ConfigurationOptions {
    // The object-parameter API takes client-node's own (promise-backed) Observable middleware.
    const mw: ObservableMiddleware = {
      pre: (ctx) => {
        // client-node made a new agent for this one request: use the pooled keep-alive one (keep-alive-agents.ts).
        const agent = ctx.getAgent();
        if (agent) ctx.setAgent(this.agents.reuse(agent) as typeof agent);
        if (res.group === '') {
          const u = new URL(ctx.getUrl());
          u.pathname = u.pathname.replace(/^\/apis\/\//, '/api/');
          ctx.setUrl(u.toString());
        }
        if (contentType !== undefined) ctx.setHeaderParam('Content-Type', contentType);
        return new Observable(Promise.resolve(ctx));
      },
      post: (rsp) => new Observable(Promise.resolve(rsp)),
    };
    return { middleware: [mw], middlewareMergeStrategy: 'append' };
  }

  private async call<R>(what: string, verb: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      throw toKubeError(err, what, verb);
    }
  }

  private ns(res: ResourceRef, namespace: string | undefined): string {
    if (!res.namespaced) return '';
    if (namespace === undefined || namespace === '') throw new KubeApiError(`${res.plural} is namespaced: a namespace is required`, undefined);
    return namespace;
  }

  async get<T extends KubeObject>(res: ResourceRef, name: string, namespace?: string): Promise<T> {
    const o = this.options(res);
    return this.call(describe(res, name, namespace), 'get', () =>
      res.namespaced
        ? this.custom.getNamespacedCustomObject({ group: res.group, version: res.version, plural: res.plural, namespace: this.ns(res, namespace), name }, o)
        : this.custom.getClusterCustomObject({ group: res.group, version: res.version, plural: res.plural, name }, o),
    ) as Promise<T>;
  }

  async list<T extends KubeObject>(res: ResourceRef, options: ListOptions = {}): Promise<KubeList<T>> {
    const o = this.options(res);
    const q = {
      group: res.group,
      version: res.version,
      plural: res.plural,
      ...(options.labelSelector !== undefined ? { labelSelector: options.labelSelector } : {}),
      ...(options.fieldSelector !== undefined ? { fieldSelector: options.fieldSelector } : {}),
      ...(options.limit !== undefined ? { limit: options.limit } : {}),
      ...(options.continueToken !== undefined ? { _continue: options.continueToken } : {}),
    };
    const list = (await this.call(describe(res, undefined, options.namespace), 'list', () =>
      res.namespaced && options.namespace !== undefined
        ? this.custom.listNamespacedCustomObject({ ...q, namespace: options.namespace }, o)
        : this.custom.listClusterCustomObject(q, o),
    )) as KubeList<T>;
    list.metadata ??= {};
    list.items ??= [];
    return list;
  }

  async create<T extends KubeObject>(res: ResourceRef, obj: T): Promise<T> {
    const namespace = obj.metadata?.namespace;
    const body = { apiVersion: apiVersionOf(res), kind: res.kind, ...obj };
    const o = this.options(res);
    return this.call(describe(res, obj.metadata?.name ?? obj.metadata?.generateName, namespace), 'create', () =>
      res.namespaced
        ? this.custom.createNamespacedCustomObject({ group: res.group, version: res.version, plural: res.plural, namespace: this.ns(res, namespace), body }, o)
        : this.custom.createClusterCustomObject({ group: res.group, version: res.version, plural: res.plural, body }, o),
    ) as Promise<T>;
  }

  async replace<T extends KubeObject>(res: ResourceRef, obj: T): Promise<T> {
    return this.put(res, obj, false);
  }

  async replaceStatus<T extends KubeObject>(res: ResourceRef, obj: T): Promise<T> {
    return this.put(res, obj, true);
  }

  private async put<T extends KubeObject>(res: ResourceRef, obj: T, status: boolean): Promise<T> {
    const name = obj.metadata?.name;
    if (!name) throw new KubeApiError(`replace ${res.plural}: metadata.name is required`, undefined);
    const namespace = obj.metadata?.namespace;
    const body = { apiVersion: apiVersionOf(res), kind: res.kind, ...obj };
    const o = this.options(res);
    const base = { group: res.group, version: res.version, plural: res.plural, name, body };
    return this.call(describe(res, name, namespace), status ? 'replace status of' : 'replace', () => {
      if (res.namespaced) {
        const p = { ...base, namespace: this.ns(res, namespace) };
        return status ? this.custom.replaceNamespacedCustomObjectStatus(p, o) : this.custom.replaceNamespacedCustomObject(p, o);
      }
      return status ? this.custom.replaceClusterCustomObjectStatus(base, o) : this.custom.replaceClusterCustomObject(base, o);
    }) as Promise<T>;
  }

  async patch<T extends KubeObject>(res: ResourceRef, name: string, patch: Patch, namespace?: string): Promise<T> {
    return this.doPatch(res, name, patch, namespace, false);
  }

  async patchStatus<T extends KubeObject>(res: ResourceRef, name: string, patch: Patch, namespace?: string): Promise<T> {
    return this.doPatch(res, name, patch, namespace, true);
  }

  private async doPatch<T extends KubeObject>(res: ResourceRef, name: string, patch: Patch, namespace: string | undefined, status: boolean): Promise<T> {
    // client-node sends JSON patch by default; the content type picks the strategy.
    const contentType = patch.type === 'merge' ? 'application/merge-patch+json' : 'application/json-patch+json';
    const body = patch.type === 'merge' ? patch.body : patch.ops;
    const o = this.options(res, contentType);
    const base = { group: res.group, version: res.version, plural: res.plural, name, body };
    return this.call(describe(res, name, namespace), status ? 'patch status of' : 'patch', () => {
      if (res.namespaced) {
        const p = { ...base, namespace: this.ns(res, namespace) };
        return status ? this.custom.patchNamespacedCustomObjectStatus(p, o) : this.custom.patchNamespacedCustomObject(p, o);
      }
      return status ? this.custom.patchClusterCustomObjectStatus(base, o) : this.custom.patchClusterCustomObject(base, o);
    }) as Promise<T>;
  }

  async delete(res: ResourceRef, name: string, namespace?: string): Promise<void> {
    const o = this.options(res);
    await this.call(describe(res, name, namespace), 'delete', () =>
      res.namespaced
        ? this.custom.deleteNamespacedCustomObject({ group: res.group, version: res.version, plural: res.plural, namespace: this.ns(res, namespace), name }, o)
        : this.custom.deleteClusterCustomObject({ group: res.group, version: res.version, plural: res.plural, name }, o),
    );
  }
}

