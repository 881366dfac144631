import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { ConflictError, NotFoundError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { fromKubeconfig } from '../../../src/cli/light-kubeconfig.js';
import { HttpKubeApi } from '../../../src/kube/http-kube-api.js';
import { ObjectWatcher } from '../../../src/kube/object-watcher.js';
import { AlreadyExistsError, CoreResources, ResourceExpiredError, type KubeObject, type ResourceRef } from '../../../src/kube/port.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';
import { eventually } from '../../support/eventually.js';

const NGP: ResourceRef = { group: 'handoff.dev', version: 'v1alpha1', plural: 'nodegpupassthroughs', kind: 'NodeGpuPassthrough', namespaced: false };

describe('HttpKubeApi (the agent\u2019s light client) against the fake API server', () => {
  let server: FakeApiServer;
  let sut: HttpKubeApi;
  beforeEach(async () => {
    server = await FakeApiServer.start();
    sut = new HttpKubeApi({ config: { server: server.url } });
  });
  afterEach(async () => {
    sut.close();
    await server.close();
  });

  it('creates, reads, patches spec and status, and maps 404/409 to typed errors', async () => {
    await sut.create(NGP, { metadata: { name: 'n1', labels: { 'handoff.dev/node': 'n1' } }, spec: {} } as KubeObject);
    await expect(sut.create(NGP, { metadata: { name: 'n1' } })).rejects.toBeInstanceOf(AlreadyExistsError);
    await sut.patch(NGP, 'n1', { type: 'merge', body: { spec: { paused: true } } });
    await sut.patchStatus(NGP, 'n1', { type: 'merge', body: { status: { inventory: [] }, spec: { paused: false } } });
    const got = await sut.get<KubeObject & { spec: { paused: boolean }; status: object }>(NGP, 'n1');
    expect(got.spec.paused).toBe(true); // a status write never changes the spec
    expect(got.status).toEqual({ inventory: [] });
    const stale = { ...got, metadata: { ...got.metadata, resourceVersion: '1' } };
    await expect(sut.replace(NGP, stale)).rejects.toBeInstanceOf(ConflictError);
    await expect(sut.get(NGP, 'absent')).rejects.toBeInstanceOf(NotFoundError);
    expect((await sut.list(NGP, { labelSelector: 'handoff.dev/node=n1' })).items).toHaveLength(1);
    expect((await sut.list(NGP, { labelSelector: 'handoff.dev/node=n2' })).items).toHaveLength(0);
    server.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
    expect((await sut.get<KubeObject>(CoreResources.nodes, 'n1')).metadata?.name).toBe('n1');
    await sut.delete(NGP, 'n1');
    await expect(sut.get(NGP, 'n1')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('watches from a resourceVersion and turns a compacted history into ResourceExpiredError', async () => {
    await sut.create(NGP, { metadata: { name: 'w0' } }); // an empty store lists at resourceVersion 0 ("any")
    const list = await sut.list(NGP);
    const seen: string[] = [];
    const ac = new AbortController();
    const watching = sut.watch(NGP, { resourceVersion: list.metadata.resourceVersion }, (type, o) => seen.push(`${type} ${o.metadata?.name}`), ac.signal);
    await sut.create(NGP, { metadata: { name: 'w1' } });
    await eventually(() => expect(seen).toEqual(['ADDED w1']));
    ac.abort();
    await watching;
    server.compact();
    await expect(sut.watch(NGP, { resourceVersion: list.metadata.resourceVersion }, () => undefined)).rejects.toBeInstanceOf(ResourceExpiredError);
  });

  it('ObjectWatcher reports the object on list and events, survives dropped watches, 410s and 500s, and reports nothing for a relist that changed nothing', async () => {
    await sut.create(NGP, { metadata: { name: 'n1', labels: { 'handoff.dev/node': 'n1' } } });
    await sut.create(NGP, { metadata: { name: 'other', labels: { 'handoff.dev/node': 'n2' } } });
    const changes: (string | undefined)[] = [];
    const ac = new AbortController();
    const watcher = new ObjectWatcher(
      { api: sut, clock: realClock, logger: silentLogger },
      { resource: NGP, labelSelector: 'handoff.dev/node=n1', onChange: (o) => changes.push(o?.metadata?.name), backoff: { initialMs: 10, maxMs: 50, minIntervalMs: 10 } },
    );
    const running = watcher.run(ac.signal);
    await eventually(() => expect(changes).toEqual(['n1']));
    await eventually(() => expect(server.openWatches).toBe(1));
    server.dropWatches({ abrupt: true });
    // Resumed from its resourceVersion: a watch again, and nothing reported (nothing changed).
    await eventually(() => expect(server.openWatches).toBe(1));
    // A 410 relists (through two failing lists); the relist changed nothing, so nothing is reported.
    await sut.patch(NGP, 'other', { type: 'merge', body: { metadata: { annotations: { a: 'b' } } } }); // filtered out: moves only the server's resourceVersion
    server.compact();
    server.failNext({ verb: 'list' }, 2, 500);
    const listsBefore = watcher.stats.lists;
    server.dropWatches();
    await eventually(() => expect(watcher.stats.lists).toBe(listsBefore + 1));
    expect(watcher.stats.restarts.expired).toBe(1);
    expect(changes).toEqual(['n1']);
    const seenBefore = changes.length;
    await sut.patch(NGP, 'n1', { type: 'merge', body: { spec: { paused: true } } });
    await eventually(() => expect(changes.length).toBe(seenBefore + 1));
    expect(changes.at(-1)).toBe('n1');
    const before = changes.length;
    await sut.patch(NGP, 'other', { type: 'merge', body: { spec: { paused: true } } });
    await new Promise((r) => setTimeout(r, 100));
    expect(changes.length).toBe(before); // other nodes' objects are filtered out by the server
    ac.abort();
    await running;
  });
});

describe('light kubeconfig', () => {
  const doc = (user: Record<string, unknown>) => ({
    'current-context': 'c',
    contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
    clusters: [{ name: 'k', cluster: { server: 'https://10.0.0.1:6443', 'certificate-authority-data': Buffer.from('CA').toString('base64') } }],
    users: [{ name: 'u', user }],
  });

  it('takes server, CA and token from the current context', () => {
    const cfg = fromKubeconfig(doc({ token: 'abc' }), '/tmp');
    expect(cfg.server).toBe('https://10.0.0.1:6443');
    expect(cfg.ca?.toString()).toBe('CA');
    expect(cfg.token?.()).toBe('abc');
  });

  it('takes client certificates from inline data', () => {
    const cfg = fromKubeconfig(doc({ 'client-certificate-data': Buffer.from('C').toString('base64'), 'client-key-data': Buffer.from('K').toString('base64') }), '/tmp');
    expect([cfg.cert?.toString(), cfg.key?.toString()]).toEqual(['C', 'K']);
  });

  it('refuses exec plugins with a pointer to --kube-client client-node', () => {
    expect(() => fromKubeconfig(doc({ exec: { command: 'aws' } }), '/tmp')).toThrow(/--kube-client client-node/);
  });
});
