import { getEventListeners } from 'node:events';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HttpKubeApi } from '../../../src/kube/http-kube-api.js';
import type { KubeObject, ResourceRef } from '../../../src/kube/port.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';

const NGP: ResourceRef = { group: 'handoff.dev', version: 'v1alpha1', plural: 'nodegpupassthroughs', kind: 'NodeGpuPassthrough', namespaced: false };

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heapMiB(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/**
 * Issue 17, item 4: every watch of the light client added an abort listener to the caller's long-lived
 * signal and never removed it, so each past watch (and its request) stayed reachable for the agent's
 * whole life. Thousands of watches on one signal, ending every way a watch ends, must leave no listener
 * and no growing heap.
 */
describe('HttpKubeApi.watch leaves nothing behind', () => {
  let server: FakeApiServer;
  let sut: HttpKubeApi;
  beforeEach(async () => {
    server = await FakeApiServer.start({ logRequests: false });
    sut = new HttpKubeApi({ config: { server: server.url } });
    await sut.create(NGP, { metadata: { name: 'n1' } } as KubeObject);
  });
  afterEach(async () => {
    sut.close();
    await server.close();
  });

  /** One batch of watches on `signal`: clean ends, 410s, 500s and streams that deliver events. */
  async function batch(signal: AbortSignal, n: number): Promise<void> {
    const faults = [{ kind: 'empty' } as const, { kind: 'gone' } as const, { kind: 'status', status: 500 } as const];
    for (let i = 0; i < n; i++) {
      server.setWatchFault(faults[i % faults.length]);
      await sut.watch(NGP, { resourceVersion: '1' }, () => undefined, signal).catch(() => undefined);
    }
    server.setWatchFault(undefined);
    // Streams that are open and delivering when the server ends them.
    for (let i = 0; i < n / 10; i++) {
      let events = 0;
      const w = sut.watch(NGP, {}, () => events++, signal);
      while (events === 0) await new Promise((r) => setImmediate(r));
      server.dropWatches();
      await w;
    }
  }

  it('3,000 watches on one signal: no abort listener left, heap flat', async () => {
    const ac = new AbortController();
    await batch(ac.signal, 300); // warm-up: JIT, sockets, buffers
    const base = heapMiB();
    await batch(ac.signal, 1_500);
    const mid = heapMiB();
    await batch(ac.signal, 1_500);
    const end = heapMiB();
    const listeners = getEventListeners(ac.signal, 'abort').length;
    console.log(`watch leak: heap ${base.toFixed(1)} → ${mid.toFixed(1)} → ${end.toFixed(1)} MiB over 3,000 watches; ${listeners} abort listener(s) left`);
    expect(listeners).toBe(0);
    // Before the fix each watch kept its request (~20 KiB) reachable: 3,000 watches grew the heap by
    // tens of MiB. A flat heap moves by a few MiB either way; the second half must not grow like the first.
    expect(end - base).toBeLessThan(8);
    expect(end - mid).toBeLessThan(4);
  }, 120_000);

  it('a watch aborted by its caller removes its listener and closes its request', async () => {
    const ac = new AbortController();
    const w = sut.watch(NGP, {}, () => undefined, ac.signal);
    await new Promise((r) => setTimeout(r, 50));
    expect(server.openWatches).toBe(1);
    ac.abort();
    await w;
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    for (let i = 0; i < 100 && server.openWatches > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(server.openWatches).toBe(0);
  });
});
