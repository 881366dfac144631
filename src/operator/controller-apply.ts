import type { EventRecorder, KubeApi, KubeObject, ResourceRef } from '../kube/index.js';
import { CoreResources } from '../kube/index.js';
import type { GpuPassthroughStatus } from '../api/v1alpha1/index.js';
import { API_VERSION } from '../api/v1alpha1/index.js';
import type { EventTarget, Write } from './plan.js';

/**
 * Performs the writes the pure planner (plan.ts) returns, one by one and in order, through the KubeApi
 * port. Each write is the narrowest request that expresses it, so a concurrent writer of another field
 * is never overwritten:
 *  - NodeGpuPassthrough spec, node label, finalizers, KubeVirt CR: JSON merge patch (lists replace whole);
 *  - GpuPassthrough status: merge patch on the status subresource (fields that disappeared are nulled);
 *  - Events: through the aggregating EventRecorder, which never throws.
 * Where the planner passes a resourceVersion it goes into the patch as a precondition, so a stale read
 * yields a 409 (ConflictError), which the work queue treats as "requeue", not as a failure. The planner
 * passes one for every write of an object it read (issue 17: a leader paused past its lease must not
 * overwrite what its successor wrote); the controller adds a lease fencing check before every write.
 */

import { GPU_PASSTHROUGH_REF, NODE_GPU_PASSTHROUGH_REF } from '../api/v1alpha1/index.js';

/** Where a write's result lands, so the controller can read its own writes before the watch delivers them. */
export interface WrittenObject {
  readonly resource: ResourceRef;
  readonly object: KubeObject;
}

export interface WriteApplierDeps {
  api: Pick<KubeApi, 'patch' | 'patchStatus' | 'delete'>;
  events: Pick<EventRecorder, 'event'>;
}

/** A merge patch that replaces `previous` with `next` at the top level: keys that vanished become null. */
export function replacingMergePatch(previous: object | undefined, next: object): Record<string, unknown> {
  const body: Record<string, unknown> = { ...next };
  for (const k of Object.keys(previous ?? {})) {
    if (!(k in next) || (next as Record<string, unknown>)[k] === undefined) body[k] = null;
  }
  return body;
}

export function involvedObject(target: EventTarget): { apiVersion: string; kind: string; name: string; uid?: string } {
  const apiVersion = target.kind === 'Node' ? 'v1' : API_VERSION;
  return target.uid !== undefined
    ? { apiVersion, kind: target.kind, name: target.name, uid: target.uid }
    : { apiVersion, kind: target.kind, name: target.name };
}

export class WriteApplier {
  private readonly api: WriteApplierDeps['api'];
  private readonly events: WriteApplierDeps['events'];

  constructor(deps: WriteApplierDeps) {
    this.api = deps.api;
    this.events = deps.events;
  }

  /**
   * Applies `write`; resolves with the object the API server returned (none for Events). Throws the
   * KubeApi port's typed errors (ConflictError on a stale resourceVersion).
   * `previousStatus` is the status the plan was computed against, for nulling vanished fields.
   */
  async apply(write: Write, previousStatus?: GpuPassthroughStatus): Promise<WrittenObject | undefined> {
    switch (write.kind) {
      case 'patchNodeSpec': {
        // Explicit defaults: the agent and the CRD agree on them, and an explicit value leaves no doubt.
        const body: Record<string, unknown> = { spec: { gpus: write.spec.gpus ?? [], paused: write.spec.paused ?? false } };
        if (write.resourceVersion !== undefined) body['metadata'] = { resourceVersion: write.resourceVersion };
        const object = await this.api.patch(NODE_GPU_PASSTHROUGH_REF, write.node, { type: 'merge', body });
        return { resource: NODE_GPU_PASSTHROUGH_REF, object };
      }
      case 'labelNode': {
        const body = { metadata: { labels: { [write.label]: write.value }, ...(write.resourceVersion !== undefined ? { resourceVersion: write.resourceVersion } : {}) } };
        const object = await this.api.patch(CoreResources.nodes, write.node, { type: 'merge', body });
        return { resource: CoreResources.nodes, object };
      }
      case 'patchPolicyStatus': {
        const body: Record<string, unknown> = { status: replacingMergePatch(previousStatus, write.status) };
        if (write.resourceVersion !== undefined) body['metadata'] = { resourceVersion: write.resourceVersion };
        const object = await this.api.patchStatus(GPU_PASSTHROUGH_REF, write.policy, { type: 'merge', body });
        return { resource: GPU_PASSTHROUGH_REF, object };
      }
      case 'addFinalizer':
      case 'removeFinalizer': {
        const metadata: Record<string, unknown> = { finalizers: [...write.finalizers] };
        if (write.resourceVersion !== undefined) metadata['resourceVersion'] = write.resourceVersion;
        const object = await this.api.patch(GPU_PASSTHROUGH_REF, write.policy, { type: 'merge', body: { metadata } });
        return { resource: GPU_PASSTHROUGH_REF, object };
      }
      case 'updateKubeVirt': {
        const object = await this.api.patch(CoreResources.kubevirts, write.name, { type: 'merge', body: write.change.patch }, write.namespace);
        return { resource: CoreResources.kubevirts, object };
      }
      case 'setNodeOwner': {
        const metadata: Record<string, unknown> = { ownerReferences: write.ownerReferences };
        if (write.resourceVersion !== undefined) metadata['resourceVersion'] = write.resourceVersion;
        const object = await this.api.patch(NODE_GPU_PASSTHROUGH_REF, write.node, { type: 'merge', body: { metadata } });
        return { resource: NODE_GPU_PASSTHROUGH_REF, object };
      }
      case 'deleteOrphan':
        await this.api.delete(NODE_GPU_PASSTHROUGH_REF, write.node);
        return undefined;
      case 'event':
        await this.events.event(involvedObject(write.regarding), write.type, write.reason, write.message);
        return undefined;
    }
  }
}
