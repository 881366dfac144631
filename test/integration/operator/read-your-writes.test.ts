import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { KubeApi, KubeObject, Patch, ResourceRef } from '../../../src/kube/index.js';
import { CoreResources } from '../../../src/kube/index.js';
import { noopReconcileRecorder } from '../../../src/metrics/recorders.js';
import type { NodeGpuPassthrough } from '../../../src/api/v1alpha1/index.js';
import { NODE_GPU_PASSTHROUGH_REF } from '../../../src/api/v1alpha1/index.js';
import { OperatorController } from '../../../src/operator/controller.js';
import { type Cluster, eventually, inventory, startCluster } from './harness.js';

describe(`${OperatorController.name}: reading its own writes`, () => {
  let c: Cluster;
  let sut: OperatorController;
  beforeEach(async () => {
    c = await startCluster();
    await c.agents.addNode('node-a', {}, inventory(2));
    sut = new OperatorController(
      { api: c.api, kubeConfig: c.server.kubeConfig(), clock: realClock, logger: silentLogger, recorder: noopReconcileRecorder, events: { event: async () => undefined } },
      { informerBackoff: { initialMs: 10, maxMs: 50, minIntervalMs: 10 } },
    );
  });
  afterEach(async () => {
    await sut.stop();
    await c.close();
  });

  it('does not repeat a write while the watch that would confirm it is late', async () => {
    await c.createPolicy('gpus', {});
    sut.start(); // informers only: this replica does not lead, the test drives reconcile itself
    await sut.waitForSync();
    await eventually(() => expect(sut.clusterView().policies.map((p) => p.metadata.name)).toEqual(['gpus']));

    // Freeze the caches: every watch is cut and reconnecting takes 2 s.
    c.server.setLatency(2_000, { verb: 'watch' });
    c.server.dropWatches();
    c.server.resetRequestLog();

    await sut.reconcile('node/node-a');
    await sut.reconcile('node/node-a');
    await sut.reconcile('policy/gpus'); // adds the finalizer
    await sut.reconcile('policy/gpus'); // writes the status
    await sut.reconcile('policy/gpus'); // nothing left to do

    const writes = c.server
      .requests()
      .filter((r) => r.verb === 'patch')
      .map((r) => `${r.plural}${r.subresource ? `/${r.subresource}` : ''} ${r.name}`);
    expect(writes).toEqual(['nodegpupassthroughs node-a', 'gpupassthroughs gpus', 'gpupassthroughs/status gpus']);
  });

  it('treats an object deleted under it as done, not as a failure', async () => {
    await c.createPolicy('gpus', {});
    sut.start();
    await sut.waitForSync();
    await eventually(() => expect(sut.clusterView().policies).toHaveLength(1));
    c.server.setLatency(2_000, { verb: 'watch' });
    c.server.dropWatches();
    c.server.resetRequestLog();
    await c.api.delete({ group: 'handoff.dev', version: 'v1alpha1', plural: 'nodegpupassthroughs', kind: 'NodeGpuPassthrough', namespaced: false }, 'node-a');

    await expect(sut.reconcile('node/node-a')).resolves.toBeUndefined();
    expect(c.server.requests({ verb: 'patch' }).map((r) => `${r.name} ${r.subresource ?? ''} ${r.status}`)).toEqual(['node-a  404']);
  });

  it('never lets its own write hide a newer object that reached the cache first', async () => {
    // A node without a simulated agent: the test plays the agent, at the worst moment.
    const nodeX = await c.api.create<KubeObject>(CoreResources.nodes, { metadata: { name: 'node-x' } });
    const owner = { apiVersion: 'v1', kind: 'Node', name: 'node-x', uid: nodeX.metadata?.uid ?? '' };
    await c.api.create(NODE_GPU_PASSTHROUGH_REF, { metadata: { name: 'node-x', ownerReferences: [owner] }, spec: { gpus: [] } } as KubeObject);
    await c.api.patchStatus(NODE_GPU_PASSTHROUGH_REF, 'node-x', { type: 'merge', body: { status: { observedGeneration: 1, inventory: inventory(1) } } });
    let armed = true;
    const api: KubeApi = {
      get: c.api.get.bind(c.api),
      list: c.api.list.bind(c.api),
      create: c.api.create.bind(c.api),
      replace: c.api.replace.bind(c.api),
      replaceStatus: c.api.replaceStatus.bind(c.api),
      patchStatus: c.api.patchStatus.bind(c.api),
      delete: c.api.delete.bind(c.api),
      patch: async <T extends KubeObject>(res: ResourceRef, name: string, patch: Patch, namespace?: string): Promise<T> => {
        const written = await c.api.patch<T>(res, name, patch, namespace);
        if (armed && res.plural === 'nodegpupassthroughs') {
          armed = false;
          // The agent answers, and the watch delivers both changes, before the operator sees its reply.
          const answered = await c.api.patchStatus(NODE_GPU_PASSTHROUGH_REF, name, { type: 'merge', body: { status: { observedGeneration: 2, node: { kernelRelease: 'answered' } } } });
          await eventually(() => expect(other.clusterView().states.get(name)?.metadata.resourceVersion).toBe(answered.metadata?.resourceVersion));
        }
        return written;
      },
    };
    const deps = { kubeConfig: c.server.kubeConfig(), clock: realClock, logger: silentLogger, recorder: noopReconcileRecorder, events: { event: async () => undefined } };
    const other = new OperatorController({ ...deps, api }, {});
    await c.createPolicy('gpus', {});
    other.start();
    try {
      await other.waitForSync();
      await eventually(() => expect(other.clusterView().policies).toHaveLength(1));
      await other.reconcile('node/node-x');
      expect(armed).toBe(false);
      const seen = other.clusterView().states.get('node-x') as NodeGpuPassthrough;
      expect(seen.spec?.gpus?.map((g) => g.policy)).toEqual(['gpus']);
      expect(seen.status?.node?.kernelRelease).toBe('answered');
    } finally {
      await other.stop();
    }
  });
});
