import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { ResilientInformer } from '../../../src/kube/informer.js';
import { ClientNodeKubeApi, type KubeObject, type ResourceRef } from '../../../src/kube/kube-api.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';

const NGP: ResourceRef = { group: 'handoff.dev', version: 'v1alpha1', plural: 'nodegpupassthroughs', kind: 'NodeGpuPassthrough', namespaced: false };
const NODES = 1000;
const GPUS = 8;

/** The operator benchmark's shape (1,000 nodes × 8 GPUs) through the real client-node, to keep the fake fast enough for it. */
describe('fake API server at benchmark scale', () => {
  let server: FakeApiServer;
  beforeEach(async () => {
    server = await FakeApiServer.start({ logRequests: false });
    for (let i = 0; i < NODES; i++) {
      server.seed('', 'v1', 'nodes', { metadata: { name: `node-${i}`, labels: { 'handoff.dev/gpu': 'true' } } });
      server.seed('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', {
        metadata: { name: `node-${i}` },
        spec: { gpus: [] },
        status: {
          inventory: Array.from({ length: GPUS }, (_, g) => ({ address: `0000:${(0x41 + g).toString(16)}:00.0`, vendorId: '10de', deviceId: '2331', class: '0x030200' })),
        },
      });
    }
  });
  afterEach(async () => {
    await server.close();
  });

  it('syncs an informer and absorbs one spec patch per node through client-node', async () => {
    const api = new ClientNodeKubeApi({ kubeConfig: server.kubeConfig() });
    const inf = new ResilientInformer<KubeObject>({ kubeConfig: server.kubeConfig(), api, clock: realClock, logger: silentLogger }, { resource: NGP });
    let updates = 0;
    inf.on({ update: () => void updates++ });
    const t0 = performance.now();
    inf.start();
    await inf.waitForSync();
    const syncMs = performance.now() - t0;
    expect(inf.list()).toHaveLength(NODES);

    const t1 = performance.now();
    const names = Array.from({ length: NODES }, (_, i) => `node-${i}`);
    // 16 concurrent writers, as an operator's worker pool would be.
    for (let i = 0; i < names.length; i += 16) {
      await Promise.all(
        names.slice(i, i + 16).map((n) =>
          api.patch(NGP, n, { type: 'merge', body: { spec: { gpus: Array.from({ length: GPUS }, (_, g) => ({ address: `0000:${(0x41 + g).toString(16)}:00.0`, resourceName: 'handoff.dev/gpu' })) } } }),
        ),
      );
    }
    const patchMs = performance.now() - t1;
    const deadline = Date.now() + 60_000;
    while (updates < NODES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const convergeMs = performance.now() - t1;
    await inf.stop();
    expect(updates).toBe(NODES);
    expect(server.counts()['patch handoff.dev/nodegpupassthroughs']).toBe(NODES);
    const perNode = server.writesPerName(['nodes', 'nodegpupassthroughs']);
    expect(perNode.size).toBe(NODES);
    expect(Math.max(...perNode.values())).toBe(1);
    console.info(`scale: sync ${NODES} objects ${syncMs.toFixed(0)} ms; ${NODES} patches ${patchMs.toFixed(0)} ms; all watch events seen after ${convergeMs.toFixed(0)} ms`);
  }, 180_000);
});
