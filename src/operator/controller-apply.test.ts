import { describe, expect, it } from 'vitest';
import type { KubeApi, KubeObject, Patch, ResourceRef } from '../kube/index.js';
import { FINALIZER } from '../api/v1alpha1/index.js';
import { WriteApplier, replacingMergePatch } from './controller-apply.js';
import { parseKey } from './controller.js';
import type { Write } from './plan.js';

type Call = { verb: 'patch' | 'patchStatus' | 'delete'; plural: string; name: string; patch?: Patch; namespace?: string };

/** Records patches and answers with the name it was asked for; any other call is a test failure. */
function createFakeApi(): { api: Pick<KubeApi, 'patch' | 'patchStatus' | 'delete'>; calls: Call[]; events: unknown[][] } {
  const calls: Call[] = [];
  const answer = (name: string): KubeObject => ({ metadata: { name, resourceVersion: '99' } });
  const api = {
    patch: async <T extends KubeObject>(res: ResourceRef, name: string, patch: Patch, namespace?: string): Promise<T> => {
      calls.push({ verb: 'patch', plural: res.plural, name, patch, ...(namespace !== undefined ? { namespace } : {}) });
      return answer(name) as T;
    },
    delete: async (res: ResourceRef, name: string): Promise<void> => {
      calls.push({ verb: 'delete', plural: res.plural, name });
    },
    patchStatus: async <T extends KubeObject>(res: ResourceRef, name: string, patch: Patch): Promise<T> => {
      calls.push({ verb: 'patchStatus', plural: res.plural, name, patch });
      return answer(name) as T;
    },
  };
  return { api, calls, events: [] };
}

describe(WriteApplier.name, () => {
  function make(): { sut: WriteApplier; calls: Call[]; events: unknown[][] } {
    const { api, calls, events } = createFakeApi();
    const sut = new WriteApplier({ api, events: { event: async (...a: unknown[]) => void events.push(a) } });
    return { sut, calls, events };
  }

  it.each<[string, Write, Omit<Call, 'patch'> & { body: unknown }]>([
    [
      'node spec: merge patch with explicit defaults and the resourceVersion precondition',
      { kind: 'patchNodeSpec', node: 'n1', spec: { gpus: [{ address: '0000:41:00.0', policy: 'p' }] }, resourceVersion: '7' },
      { verb: 'patch', plural: 'nodegpupassthroughs', name: 'n1', body: { spec: { gpus: [{ address: '0000:41:00.0', policy: 'p' }], paused: false }, metadata: { resourceVersion: '7' } } },
    ],
    [
      'ready label: merge patch of one label',
      { kind: 'labelNode', node: 'n1', label: 'handoff.dev/passthrough-ready', value: 'true' },
      { verb: 'patch', plural: 'nodes', name: 'n1', body: { metadata: { labels: { 'handoff.dev/passthrough-ready': 'true' } } } },
    ],
    [
      'ready label with the Node’s resourceVersion as precondition',
      { kind: 'labelNode', node: 'n1', label: 'handoff.dev/passthrough-ready', value: 'true', resourceVersion: '12' },
      { verb: 'patch', plural: 'nodes', name: 'n1', body: { metadata: { labels: { 'handoff.dev/passthrough-ready': 'true' }, resourceVersion: '12' } } },
    ],
    [
      'owner reference: the whole list with the resourceVersion',
      { kind: 'setNodeOwner', node: 'n1', ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'u1' }], resourceVersion: '3' },
      { verb: 'patch', plural: 'nodegpupassthroughs', name: 'n1', body: { metadata: { ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'u1' }], resourceVersion: '3' } } },
    ],
    [
      'finalizer removal: the whole list with the resourceVersion',
      { kind: 'removeFinalizer', policy: 'p', finalizers: ['other'], resourceVersion: '5' },
      { verb: 'patch', plural: 'gpupassthroughs', name: 'p', body: { metadata: { finalizers: ['other'], resourceVersion: '5' } } },
    ],
    [
      'finalizer add without a resourceVersion',
      { kind: 'addFinalizer', policy: 'p', finalizers: [FINALIZER] },
      { verb: 'patch', plural: 'gpupassthroughs', name: 'p', body: { metadata: { finalizers: [FINALIZER] } } },
    ],
  ])('%s', async (_name, write, expected) => {
    const { sut, calls } = make();
    const written = await sut.apply(write);
    const { body, ...rest } = expected;
    expect(calls).toEqual([{ ...rest, patch: { type: 'merge', body } }]);
    expect(written?.object.metadata?.name).toBe(expected.name);
  });

  it('patches policy status on the subresource and nulls fields that vanished', async () => {
    const { sut, calls } = make();
    await sut.apply({ kind: 'patchPolicyStatus', policy: 'p', status: { nodesMatched: 1 } }, { nodesMatched: 2, failingNodes: [{ node: 'a', reason: 'X' }] });
    expect(calls).toEqual([{ verb: 'patchStatus', plural: 'gpupassthroughs', name: 'p', patch: { type: 'merge', body: { status: { nodesMatched: 1, failingNodes: null } } } }]);
  });

  it('patches policy status with the policy’s resourceVersion as precondition when the plan names one', async () => {
    const { sut, calls } = make();
    await sut.apply({ kind: 'patchPolicyStatus', policy: 'p', status: { nodesMatched: 1 }, resourceVersion: '8' });
    expect(calls[0]?.patch).toEqual({ type: 'merge', body: { status: { nodesMatched: 1 }, metadata: { resourceVersion: '8' } } });
  });

  it('deletes an orphaned NodeGpuPassthrough', async () => {
    const { sut, calls } = make();
    await sut.apply({ kind: 'deleteOrphan', node: 'ghost', uid: 'u', resourceVersion: '4' });
    expect(calls).toEqual([{ verb: 'delete', plural: 'nodegpupassthroughs', name: 'ghost' }]);
  });

  it('records Events through the recorder with the involved object of the right API version', async () => {
    const { sut, calls, events } = make();
    const written = await sut.apply({ kind: 'event', regarding: { kind: 'Node', name: 'n1', uid: 'u' }, type: 'Warning', reason: 'R', message: 'M' });
    expect(written).toBeUndefined();
    expect(calls).toEqual([]);
    expect(events).toEqual([[{ apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'u' }, 'Warning', 'R', 'M']]);
  });
});

describe(replacingMergePatch.name, () => {
  it('keeps new values and nulls only keys that disappeared', () => {
    expect(replacingMergePatch({ a: 1, b: 2, c: 3 }, { a: 5, c: undefined })).toEqual({ a: 5, b: null, c: null });
    expect(replacingMergePatch(undefined, { a: 1 })).toEqual({ a: 1 });
  });
});

describe(parseKey.name, () => {
  it.each([
    ['policy/gpus', { kind: 'policy', name: 'gpus' }],
    ['node/worker-1', { kind: 'node', name: 'worker-1' }],
    ['kubevirt', { kind: 'kubevirt' }],
    ['node/', undefined],
    ['pod/x', undefined],
    ['garbage', undefined],
  ])('%s', (key, expected) => {
    expect(parseKey(key)).toEqual(expected);
  });
});
