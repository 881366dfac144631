import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { noopReconcileRecorder } from '../../../src/metrics/recorders.js';
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
      { informerBackoff: { initialMs: 10, maxMs: 50 } },
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
});
