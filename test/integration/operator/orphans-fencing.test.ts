import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { KubeObject } from '../../../src/kube/index.js';
import { CoreResources, EventRecorder } from '../../../src/kube/index.js';
import { noopReconcileRecorder } from '../../../src/metrics/recorders.js';
import { NODE_GPU_PASSTHROUGH_REF } from '../../../src/api/v1alpha1/index.js';
import { OperatorController } from '../../../src/operator/controller.js';
import { type Cluster, eventually, startCluster } from './harness.js';

/** Issue 17 items 6 and 8 against the fake API server: owner references, orphans, fenced writes. */
describe(`${OperatorController.name}: owners, orphans and fencing`, () => {
  let c: Cluster;
  let sut: OperatorController | undefined;
  let mayWrite = true;
  let lead: AbortController;
  beforeEach(async () => {
    c = await startCluster();
    mayWrite = true;
    lead = new AbortController();
  });
  afterEach(async () => {
    lead.abort();
    await sut?.stop();
    await c.close();
  });

  function start(opts: { orphanGraceMs?: number } = {}): OperatorController {
    const events = new EventRecorder({ api: c.api, clock: realClock, logger: silentLogger }, { component: 'vfio-handoff-operator' });
    sut = new OperatorController(
      { api: c.api, kubeConfig: c.server.kubeConfig(), clock: realClock, logger: silentLogger, recorder: noopReconcileRecorder, events, mayWrite: () => mayWrite },
      { informerBackoff: { initialMs: 10, maxMs: 50, minIntervalMs: 10 }, batchMs: 20, ...opts },
    );
    sut.start();
    void sut.lead(lead.signal);
    return sut;
  }

  it('a NodeGpuPassthrough created while its Node was absent gets the Node as owner when the Node appears', async () => {
    // What an agent does when its Node is not there (yet): the object has no owner.
    await c.api.create(NODE_GPU_PASSTHROUGH_REF, { metadata: { name: 'late' }, spec: { gpus: [] } } as KubeObject);
    start();
    await new Promise((r) => setTimeout(r, 200));
    expect(c.state('late')?.metadata.ownerReferences).toBeUndefined();
    const node = await c.api.create<KubeObject>(CoreResources.nodes, { metadata: { name: 'late' } });
    await eventually(() => expect(c.state('late')?.metadata.ownerReferences).toEqual([{ apiVersion: 'v1', kind: 'Node', name: 'late', uid: node.metadata?.uid }]));
  });

  it('an orphan (agent --node-name ghost) is reported with an Event and deleted after its grace period', async () => {
    await c.api.create(NODE_GPU_PASSTHROUGH_REF, { metadata: { name: 'ghost' }, spec: { gpus: [] } } as KubeObject);
    start({ orphanGraceMs: 300 });
    await eventually(() => expect(c.state('ghost')).toBeUndefined(), 15_000);
    const ev = c.events().find((e) => e.reason === 'Orphaned');
    expect(ev).toMatchObject({ type: 'Warning', kind: 'NodeGpuPassthrough', name: 'ghost' });
    expect(ev?.message).toContain('no Node named ghost exists');
  });

  it('a leader whose Lease renewal is too old writes nothing (fencing), and writes again once renewed', async () => {
    mayWrite = false;
    await c.agents.addNode('n1', {}, []);
    await c.createPolicy('gpus', {});
    start();
    await new Promise((r) => setTimeout(r, 500));
    const writes = () => c.server.requests().filter((r) => ['patch', 'update', 'delete'].includes(r.verb) && r.plural !== 'events' && r.plural !== 'leases' && !(r.plural === 'nodegpupassthroughs' && r.subresource === 'status'));
    expect(writes()).toEqual([]);
    expect(c.policy('gpus')?.metadata.finalizers).toBeUndefined();
    mayWrite = true;
    sut?.enqueueAll();
    await eventually(() => expect(c.policy('gpus')?.metadata.finalizers).toEqual(['handoff.dev/release']));
  });
});
