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
import { ConflictError, KubeApiError, NotFoundError } from '../core/errors.js';

export interface ResourceRef {
  /** '' for the core group (nodes, events, pods). */
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

export interface KubeList<T> {
  apiVersion?: string;
  kind?: string;
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  value?: unknown;
  from?: string;
}

/** A merge patch (RFC 7386) or a JSON patch (RFC 6902). */
export type Patch = { readonly type: 'merge'; readonly body: object } | { readonly type: 'json'; readonly ops: readonly JsonPatchOp[] };

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continueToken?: string;
}

export interface KubeApi {
  get<T extends KubeObject>(res: ResourceRef, name: string, namespace?: string): Promise<T>;
  list<T extends KubeObject>(res: ResourceRef, options?: ListOptions): Promise<KubeList<T>>;
  /** The namespace comes from `obj.metadata.namespace` for namespaced resources. */
  create<T extends KubeObject>(res: ResourceRef, obj: T): Promise<T>;
  /** PUT with optimistic concurrency: a stale `metadata.resourceVersion` throws ConflictError. */
  replace<T extends KubeObject>(res: ResourceRef, obj: T): Promise<T>;
  /** PUT to `/status`: only the status stanza changes. */
  replaceStatus<T extends KubeObject>(res: ResourceRef, obj: T): Promise<T>;
  patch<T extends KubeObject>(res: ResourceRef, name: string, patch: Patch, namespace?: string): Promise<T>;
  /** PATCH to `/status`. */
  patchStatus<T extends KubeObject>(res: ResourceRef, name: string, patch: Patch, namespace?: string): Promise<T>;
  /** Resolves once the delete was accepted (an object with finalizers stays until they are removed). */
  delete(res: ResourceRef, name: string, namespace?: string): Promise<void>;
}

/** A 409 on create: the object exists. Still a ConflictError, so generic handlers requeue. */
export class AlreadyExistsError extends ConflictError {}

/** 410 Gone: the resourceVersion is too old; the caller must relist. */
export class ResourceExpiredError extends KubeApiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 410, options);
  }
}

export function apiVersionOf(res: Pick<ResourceRef, 'group' | 'version'>): string {
  return res.group === '' ? res.version : `${res.group}/${res.version}`;
}

/** The collection path client-node's ListWatch needs, e.g. `/api/v1/nodes` or `/apis/handoff.dev/v1alpha1/namespaces/x/…`. */
export function collectionPath(res: ResourceRef, namespace?: string): string {
  const base = res.group === '' ? `/api/${res.version}` : `/apis/${res.group}/${res.version}`;
  const ns = res.namespaced && namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${res.plural}`;
}

function describe(res: ResourceRef, name?: string, namespace?: string): string {
  const r = res.group === '' ? res.plural : `${res.plural}.${res.group}`;
  return `${r}${namespace ? ` ${namespace}/` : ' '}${name ?? ''}`.trimEnd();
}

function statusMessage(body: unknown): string | undefined {
  if (typeof body === 'string') {
    try {
      return statusMessage(JSON.parse(body));
    } catch {
      return body || undefined;
    }
  }
  const b = body as { message?: unknown; reason?: unknown } | null;
  return typeof b?.message === 'string' ? b.message : undefined;
}

/** Maps a client-node failure (ApiException or a transport error) to our typed errors. */
export function toKubeError(err: unknown, what: string, verb: string): Error {
  if (err instanceof ApiException) {
    const code = err.code as number;
    const detail = statusMessage(err.body) ?? `HTTP ${code}`;
    const message = `${verb} ${what}: ${detail}`;
    if (code === 404) return new NotFoundError(message, { cause: err });
    if (code === 409) return verb === 'create' ? new AlreadyExistsError(message, { cause: err }) : new ConflictError(message, { cause: err });
    if (code === 410) return new ResourceExpiredError(message, { cause: err });
    return new KubeApiError(message, code, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new KubeApiError(`${verb} ${what}: ${message}`, undefined, { cause: err });
}

export interface ClientNodeKubeApiDeps {
  kubeConfig: KubeConfig;
}

/**
 * KubeApi over client-node's CustomObjectsApi, which returns plain JSON for any group/version/plural.
 * Core resources (group '') use the same calls: a request middleware rewrites `/apis//v1/…` to `/api/v1/…`,
 * which keeps one code path and no model-class (de)serialisation for nodes and events.
 */
export class ClientNodeKubeApi implements KubeApi {
  private readonly custom: CustomObjectsApi;

  constructor(deps: ClientNodeKubeApiDeps) {
    this.custom = deps.kubeConfig.makeApiClient(CustomObjectsApi);
  }

  private options(res: ResourceRef, contentType?: string): ConfigurationOptions | undefined {
    if (res.group !== '' && contentType === undefined) return undefined;
    // The object-parameter API takes client-node's own (promise-backed) Observable middleware.
    const mw: ObservableMiddleware = {
      pre: (ctx) => {
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

/** Well-known resources the operator, agent and runtime use. */
export const CoreResources = {
  nodes: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  events: { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
  customResourceDefinitions: {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    plural: 'customresourcedefinitions',
    kind: 'CustomResourceDefinition',
    namespaced: false,
  },
  kubevirts: { group: 'kubevirt.io', version: 'v1', plural: 'kubevirts', kind: 'KubeVirt', namespaced: true },
} as const satisfies Record<string, ResourceRef>;
