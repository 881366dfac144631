import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { backoffDelay } from '../../../src/core/backoff.js';
import { ResilientInformer } from '../../../src/kube/informer.js';
import { ClientNodeKubeApi, type KubeObject, type ResourceRef } from '../../../src/kube/kube-api.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';
import { eventually as waitUntil } from '../../support/eventually.js';

const NGP: ResourceRef = { group: 'handoff.dev', version: 'v1alpha1', plural: 'nodegpupassthroughs', kind: 'NodeGpuPassthrough', namespaced: false };

const eventually = (check: () => void, timeoutMs = 5000): Promise<void> => waitUntil(check, timeoutMs);

describe(ResilientInformer.name, () => {
  let server: FakeApiServer;
  let api: ClientNodeKubeApi;
  let sut: ResilientInformer<KubeObject>;
  let seen: string[];

  function makeSut(resyncPeriodMs = 0): ResilientInformer<KubeObject> {
    const inf = new ResilientInformer<KubeObject>(
      { kubeConfig: server.kubeConfig(), api, clock: realClock, logger: silentLogger, random: () => 0.5 },
      { resource: NGP, resyncPeriodMs, backoff: { initialMs: 10, maxMs: 50, minIntervalMs: 10 } },
    );
    inf.on({
      add: (o) => seen.push(`add ${o.metadata?.name}`),
      update: (o) => seen.push(`update ${o.metadata?.name}`),
      delete: (o) => seen.push(`delete ${o.metadata?.name}`),
      resync: (o) => seen.push(`resync ${o.metadata?.name}`),
    });
    return inf;
  }

  beforeEach(async () => {
    server = await FakeApiServer.start();
    api = new ClientNodeKubeApi({ kubeConfig: server.kubeConfig() });
    seen = [];
  });
  afterEach(async () => {
    await sut?.stop();
    await server.close();
  });

  async function create(name: string): Promise<void> {
    await api.create(NGP, { metadata: { name }, spec: {} });
  }

  it('lists into its cache, reports hasSynced, then follows the watch', async () => {
    await create('a');
    await create('b');
    sut = makeSut();
    expect(sut.hasSynced()).toBe(false);
    sut.start();
    await sut.waitForSync();
    expect(sut.hasSynced()).toBe(true);
    expect(sut.list().map((o) => o.metadata?.name).sort()).toEqual(['a', 'b']);
    expect(seen.sort()).toEqual(['add a', 'add b']);
    await create('c');
    await api.patch(NGP, 'a', { type: 'merge', body: { spec: { paused: true } } });
    await api.delete(NGP, 'b');
    await eventually(() => expect(seen.slice(2)).toEqual(['add c', 'update a', 'delete b']));
    expect(sut.get('a')).toMatchObject({ spec: { paused: true } });
  });

  it('resumes after a cleanly dropped watch without a relist and without missing events', async () => {
    sut = makeSut();
    sut.start();
    await sut.waitForSync();
    await eventually(() => expect(server.openWatches).toBe(1));
    server.dropWatches();
    await create('x'); // written while the watch is down
    await eventually(() => expect(seen).toEqual(['add x']));
    expect(sut.stats.lists).toBe(1);
    expect(server.requests({ verb: 'watch' }).length).toBeGreaterThanOrEqual(2);
  });

  it('restarts after an abrupt disconnect, which client-node alone does not', async () => {
    sut = makeSut();
    sut.start();
    await sut.waitForSync();
    await eventually(() => expect(server.openWatches).toBe(1));
    server.dropWatches({ abrupt: true });
    await eventually(() => expect(sut.stats.restarts).toBeGreaterThanOrEqual(1));
    await create('y');
    await eventually(() => expect(seen).toContain('add y'));
  });

  it('keeps retrying with backoff through 500s on list and watch', async () => {
    await create('a');
    server.failNext({ verb: 'list' }, 2);
    sut = makeSut();
    sut.start();
    await sut.waitForSync();
    expect(sut.stats.restarts).toBe(2);
    await eventually(() => expect(server.openWatches).toBe(1));
    server.failNext({ verb: 'watch' }, 3, 500);
    server.dropWatches();
    await create('b');
    await eventually(() => expect(seen).toEqual(['add a', 'add b']));
    expect(sut.stats.restarts).toBe(5);
    expect(sut.stats.lists).toBe(1); // resumed from its resourceVersion each time, no relist needed
  });

  it('relists after 410 Gone and reconciles the cache (deletes and adds it missed)', async () => {
    await create('a');
    await create('b');
    sut = makeSut();
    sut.start();
    await sut.waitForSync();
    await eventually(() => expect(server.openWatches).toBe(1));
    // Hold the reconnect back long enough to change state and compact history behind it.
    server.setLatency(300, { verb: 'watch' });
    server.dropWatches();
    await api.delete(NGP, 'a');
    await create('c');
    server.compact();
    await eventually(() => expect(sut.stats.lists).toBe(2));
    await eventually(() => expect(seen.slice(2).sort()).toEqual(['add c', 'delete a']));
    expect(sut.list().map((o) => o.metadata?.name).sort()).toEqual(['b', 'c']);
  });

  it('re-emits every cached object on each resync', async () => {
    await create('a');
    await create('b');
    sut = makeSut(40);
    sut.start();
    await sut.waitForSync();
    await eventually(() => {
      expect(seen.filter((s) => s === 'resync a').length).toBeGreaterThanOrEqual(2);
      expect(seen.filter((s) => s === 'resync b').length).toBeGreaterThanOrEqual(2);
    });
  });

  it('stop ends the watch and emits nothing more', async () => {
    sut = makeSut();
    sut.start();
    await sut.waitForSync();
    await eventually(() => expect(server.openWatches).toBe(1));
    await sut.stop();
    await eventually(() => expect(server.openWatches).toBe(0));
    await create('late');
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual([]);
    expect(sut.stats.errors).toBe(0);
  });

  it('stop also closes a watch whose request was still in flight', async () => {
    server.setLatency(150, { verb: 'watch' });
    sut = makeSut();
    sut.start();
    await sut.waitForSync();
    await sut.stop(); // the watch request is still waiting on the server
    await new Promise((r) => setTimeout(r, 250));
    await create('late');
    await eventually(() => expect(server.openWatches).toBe(0));
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual([]);
  });
});

describe(backoffDelay.name, () => {
  it.each([
    [0, 100],
    [1, 200],
    [3, 800],
    [10, 1000],
  ])('attempt %i without jitter is %i ms (capped)', (attempt, expected) => {
    expect(backoffDelay(attempt, { initialMs: 100, maxMs: 1000 }, () => 0.5)).toBe(expected);
  });
  it('jitters within ±20 %', () => {
    expect(backoffDelay(0, { initialMs: 100, maxMs: 1000 }, () => 0)).toBe(80);
    expect(backoffDelay(0, { initialMs: 100, maxMs: 1000 }, () => 0.999999)).toBe(120);
  });
});
