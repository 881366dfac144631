/**
 * The narrow Kubernetes API port the operator and the agent use — types, typed errors and paths only,
 * no client library: the agent's light HTTP adapter (http-kube-api.ts) must not pull client-node in.
 * Objects cross this port as plain JSON, addressed by group/version/plural so custom resources and
 * core types look the same. 404 → NotFoundError, 409 → ConflictError (AlreadyExistsError for a create),
 * 410 → ResourceExpiredError (the caller must relist), anything else → KubeApiError.
 */
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

export function describeResource(res: ResourceRef, name?: string, namespace?: string): string {
  const r = res.group === '' ? res.plural : `${res.plural}.${res.group}`;
  return `${r}${namespace ? ` ${namespace}/` : ' '}${name ?? ''}`.trimEnd();
}

export function statusMessage(body: unknown): string | undefined {
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


/** Maps an HTTP status from the API server to our typed errors. */
export function errorForStatus(code: number, message: string, verb: string, cause?: unknown): Error {
  if (code === 404) return new NotFoundError(message, { cause });
  if (code === 409) return verb === 'create' ? new AlreadyExistsError(message, { cause }) : new ConflictError(message, { cause });
  if (code === 410) return new ResourceExpiredError(message, { cause });
  return new KubeApiError(message, code, { cause });
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
