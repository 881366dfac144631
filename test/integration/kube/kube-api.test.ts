import { CustomObjectsApi } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConflictError, KubeApiError, NotFoundError } from '../../../src/core/errors.js';
import { AlreadyExistsError, ClientNodeKubeApi, CoreResources, type KubeObject, type ResourceRef } from '../../../src/kube/kube-api.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';

const GPT: ResourceRef = { group: 'handoff.dev', version: 'v1alpha1', plural: 'gpupassthroughs', kind: 'GpuPassthrough', namespaced: false };

interface Gpt extends KubeObject {
  spec?: { paused?: boolean; priority?: number };
  status?: { observedGeneration?: number; nodesReady?: number };
}

describe(ClientNodeKubeApi.name, () => {
  let server: FakeApiServer;
  let sut: ClientNodeKubeApi;
  beforeEach(async () => {
    server = await FakeApiServer.start();
    sut = new ClientNodeKubeApi({ kubeConfig: server.kubeConfig() });
  });
  afterEach(async () => {
    await server.close();
  });

  it('creates, gets, lists with a label selector and deletes a custom resource', async () => {
    const created = await sut.create<Gpt>(GPT, { metadata: { name: 'a', labels: { team: 'x' } }, spec: { priority: 1 } });
    expect(created.metadata?.uid).toBeTruthy();
    expect(created.metadata?.generation).toBe(1);
    await sut.create<Gpt>(GPT, { metadata: { name: 'b', labels: { team: 'y' } }, spec: {} });
    const got = await sut.get<Gpt>(GPT, 'a');
    expect(got.spec?.priority).toBe(1);
    const list = await sut.list<Gpt>(GPT, { labelSelector: 'team=x' });
    expect(list.items.map((i) => i.metadata?.name)).toEqual(['a']);
    expect(Number(list.metadata.resourceVersion)).toBeGreaterThanOrEqual(2);
    await sut.delete(GPT, 'a');
    await expect(sut.get(GPT, 'a')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('reuses its connections: 40 calls open one, not one each (client-node alone makes a new agent per call)', async () => {
    await sut.create<Gpt>(GPT, { metadata: { name: 'a' }, spec: {} });
    const before = server.connectionsAccepted;
    for (let i = 0; i < 20; i++) {
      await sut.get<Gpt>(GPT, 'a');
      await sut.list(CoreResources.nodes);
    }
    expect(server.connectionsAccepted - before).toBeLessThanOrEqual(1);
    // The same calls through client-node as it comes: one connection per call.
    const plain = server.kubeConfig().makeApiClient(CustomObjectsApi);
    const mid = server.connectionsAccepted;
    for (let i = 0; i < 5; i++) await plain.getClusterCustomObject({ group: GPT.group, version: GPT.version, plural: GPT.plural, name: 'a' });
    expect(server.connectionsAccepted - mid).toBe(5);
    sut.close();
  });

  it('maps 409 on create to AlreadyExistsError and a stale replace to ConflictError', async () => {
    await sut.create<Gpt>(GPT, { metadata: { name: 'a' }, spec: {} });
    const err = await sut.create<Gpt>(GPT, { metadata: { name: 'a' }, spec: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect((err as ConflictError).code).toBe('CONFLICT');
    const v1 = await sut.get<Gpt>(GPT, 'a');
    await sut.replace<Gpt>(GPT, { ...v1, spec: { priority: 2 } });
    const stale = await sut.replace<Gpt>(GPT, { ...v1, spec: { priority: 3 } }).catch((e: unknown) => e);
    expect(stale).toBeInstanceOf(ConflictError);
    expect(stale).not.toBeInstanceOf(AlreadyExistsError);
  });

  it('keeps spec and status apart: status writes ignore spec, generation bumps on spec changes only', async () => {
    await sut.create<Gpt>(GPT, { metadata: { name: 'a' }, spec: { priority: 1 }, status: { nodesReady: 9 } });
    expect((await sut.get<Gpt>(GPT, 'a')).status).toBeUndefined();
    const s = await sut.patchStatus<Gpt>(GPT, 'a', { type: 'merge', body: { spec: { priority: 7 }, status: { nodesReady: 3 } } });
    expect(s.status?.nodesReady).toBe(3);
    expect(s.spec?.priority).toBe(1);
    expect(s.metadata?.generation).toBe(1);
    const m = await sut.patch<Gpt>(GPT, 'a', { type: 'merge', body: { spec: { priority: 5 }, status: { nodesReady: 0 } } });
    expect(m.spec?.priority).toBe(5);
    expect(m.status?.nodesReady).toBe(3);
    expect(m.metadata?.generation).toBe(2);
    const l = await sut.patch<Gpt>(GPT, 'a', { type: 'merge', body: { metadata: { labels: { x: 'y' } } } });
    expect(l.metadata?.generation).toBe(2);
  });

  it('applies JSON patches and answers a failed test op with a KubeApiError 422', async () => {
    await sut.create<Gpt>(GPT, { metadata: { name: 'a' }, spec: { priority: 1 } });
    const p = await sut.patch<Gpt>(GPT, 'a', { type: 'json', ops: [{ op: 'replace', path: '/spec/priority', value: 4 }, { op: 'add', path: '/spec/paused', value: true }] });
    expect(p.spec).toEqual({ priority: 4, paused: true });
    const err = await sut.patch(GPT, 'a', { type: 'json', ops: [{ op: 'test', path: '/spec/priority', value: 1 }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).status).toBe(422);
  });

  it('a merge patch carrying a stale resourceVersion is a ConflictError', async () => {
    const a = await sut.create<Gpt>(GPT, { metadata: { name: 'a' }, spec: { priority: 1 } });
    await sut.patch(GPT, 'a', { type: 'merge', body: { spec: { priority: 2 } } });
    const err = await sut
      .patch(GPT, 'a', { type: 'merge', body: { metadata: { resourceVersion: a.metadata?.resourceVersion }, spec: { priority: 3 } } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
  });

  it('keeps an object with finalizers until they are removed', async () => {
    await sut.create<Gpt>(GPT, { metadata: { name: 'a', finalizers: ['handoff.dev/release'] }, spec: {} });
    await sut.delete(GPT, 'a');
    const terminating = await sut.get<Gpt>(GPT, 'a');
    expect(terminating.metadata?.deletionTimestamp).toBeTruthy();
    await sut.patch(GPT, 'a', { type: 'json', ops: [{ op: 'remove', path: '/metadata/finalizers' }] });
    await expect(sut.get(GPT, 'a')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('reaches core resources (nodes, namespaced events) through the same calls', async () => {
    server.seed('', 'v1', 'nodes', { metadata: { name: 'n1', labels: { gpu: 'yes' } }, status: { nodeInfo: { kernelVersion: '6.8' } } });
    const node = await sut.get<KubeObject & { status?: { nodeInfo?: { kernelVersion?: string } } }>(CoreResources.nodes, 'n1');
    expect(node.status?.nodeInfo?.kernelVersion).toBe('6.8');
    expect(typeof node.metadata?.creationTimestamp).toBe('string'); // plain JSON, no client-node Date conversion
    await sut.patch(CoreResources.nodes, 'n1', { type: 'merge', body: { metadata: { labels: { 'handoff.dev/passthrough-ready': 'true' } } } });
    expect(server.object('', 'v1', 'nodes', 'n1')?.metadata.labels).toEqual({ gpu: 'yes', 'handoff.dev/passthrough-ready': 'true' });
    const ev = await sut.create(CoreResources.events, { metadata: { name: 'e1', namespace: 'default' } });
    expect(ev.metadata?.namespace).toBe('default');
    expect(server.requests({ verb: 'patch', path: '/api/v1/nodes/n1' })).toHaveLength(1);
  });

  it('surfaces injected 500s as KubeApiError with the status', async () => {
    server.failNext({ verb: 'get', path: 'gpupassthroughs' }, 1, 503);
    const err = await sut.get(GPT, 'x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).status).toBe(503);
    await expect(sut.get(GPT, 'x')).rejects.toBeInstanceOf(NotFoundError);
  });
});
