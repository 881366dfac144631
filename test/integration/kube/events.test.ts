import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { EventRecorder, type CoreEvent, type ObjectReference } from '../../../src/kube/events.js';
import { ClientNodeKubeApi } from '../../../src/kube/kube-api.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';

const policy: ObjectReference = { apiVersion: 'handoff.dev/v1alpha1', kind: 'GpuPassthrough', name: 'gpus', uid: 'u-1' };
const node: ObjectReference = { apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'u-2' };

describe(EventRecorder.name, () => {
  let server: FakeApiServer;
  let sut: EventRecorder;
  beforeEach(async () => {
    server = await FakeApiServer.start();
    sut = new EventRecorder(
      { api: new ClientNodeKubeApi({ kubeConfig: server.kubeConfig() }), clock: realClock, logger: silentLogger },
      { component: 'vfio-handoff-operator', host: 'op-0' },
    );
  });
  afterEach(async () => {
    await server.close();
  });

  const events = (): CoreEvent[] => server.objects('', 'v1', 'events') as unknown as CoreEvent[];

  it('creates a core/v1 Event about a cluster-scoped object in the default namespace', async () => {
    await sut.warning(policy, 'AgentFailed', 'node n1: bind failed');
    expect(events()).toHaveLength(1);
    expect(events()[0]).toMatchObject({
      metadata: { namespace: 'default' },
      involvedObject: policy,
      type: 'Warning',
      reason: 'AgentFailed',
      message: 'node n1: bind failed',
      count: 1,
      source: { component: 'vfio-handoff-operator', host: 'op-0' },
      reportingComponent: 'vfio-handoff-operator',
    });
    expect(events()[0]?.metadata?.name).toMatch(/^gpus\.[0-9a-f]+$/);
  });

  it('aggregates repeats into one Event with a rising count', async () => {
    for (let i = 0; i < 4; i++) await sut.warning(node, 'PrepareFailed', 'EBUSY');
    expect(events()).toHaveLength(1);
    expect(events()[0]?.count).toBe(4);
    expect(server.requests({ verb: 'create', path: '/events' })).toHaveLength(1);
    expect(server.requests({ verb: 'patch', path: '/events/' })).toHaveLength(3);
  });

  it('folds a storm of concurrent repeats into a few writes', async () => {
    await Promise.all(Array.from({ length: 50 }, () => sut.warning(node, 'PrepareFailed', 'EBUSY')));
    expect(events()).toHaveLength(1);
    expect(events()[0]?.count).toBe(50);
    const writes = server.requests({ path: '/events' }).filter((r) => r.verb === 'create' || r.verb === 'patch');
    expect(writes.length).toBeLessThanOrEqual(2);
  });

  it('keeps distinct reasons, messages and objects apart', async () => {
    await sut.normal(node, 'Prepared', 'gpu 0000:41:00.0 on vfio-pci');
    await sut.normal(node, 'Prepared', 'gpu 0000:42:00.0 on vfio-pci');
    await sut.warning(node, 'Prepared', 'gpu 0000:42:00.0 on vfio-pci');
    await sut.normal(policy, 'Prepared', 'gpu 0000:41:00.0 on vfio-pci');
    expect(events()).toHaveLength(4);
  });

  it('starts a new Event when the aggregated one is gone', async () => {
    await sut.warning(node, 'PrepareFailed', 'EBUSY');
    const name = events()[0]?.metadata?.name as string;
    const api = new ClientNodeKubeApi({ kubeConfig: server.kubeConfig() });
    await api.delete({ group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true }, name, 'default');
    await sut.warning(node, 'PrepareFailed', 'EBUSY');
    expect(events()).toHaveLength(1);
    expect(events()[0]?.metadata?.name).not.toBe(name);
    expect(events()[0]?.count).toBe(1);
  });

  it('never throws when the API fails, and carries the count into the next write', async () => {
    server.failNext({ verb: 'create', path: '/events' }, 1);
    await expect(sut.warning(node, 'PrepareFailed', 'EBUSY')).resolves.toBeUndefined();
    expect(events()).toHaveLength(0);
    await sut.warning(node, 'PrepareFailed', 'EBUSY');
    expect(events()[0]?.count).toBe(2);
  });
});
