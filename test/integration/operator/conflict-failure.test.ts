import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { READY_LABEL } from '../../../src/api/v1alpha1/index.js';
import { addr, type Cluster, condition, eventually, inventory, specGpus, startCluster } from './harness.js';

describe('operator: overlapping policies and agent failures', () => {
  let c: Cluster;
  beforeEach(async () => {
    c = await startCluster();
    await c.agents.addNode('node-a', { gpu: 'yes' }, inventory(2));
    await c.agents.addNode('node-b', { gpu: 'yes' }, inventory(2));
  });
  afterEach(async () => {
    await c.close();
  });

  it('gives a GPU claimed by two policies to the higher priority and reports Conflict on the loser', async () => {
    c.startOperator();
    await c.createPolicy('low', { gpus: { addresses: [addr(0)] } });
    await eventually(() => expect(condition(c.policy('low'), 'Ready')).toBe('True'));
    await c.createPolicy('high', { priority: 10 });

    await eventually(() => {
      for (const n of ['node-a', 'node-b']) {
        expect(specGpus(c.state(n)).map((g) => [g.address, g.policy])).toEqual([
          [addr(0), 'high'],
          [addr(1), 'high'],
        ]);
      }
      expect(condition(c.policy('low'), 'Conflict')).toBe('True');
      expect(condition(c.policy('high'), 'Conflict')).toBe('False');
      expect(condition(c.policy('high'), 'Ready')).toBe('True');
    });
    await eventually(() =>
      expect(c.events()).toContainEqual(expect.objectContaining({ kind: 'GpuPassthrough', name: 'low', reason: 'Conflict', type: 'Warning' })),
    );
    expect(c.events().filter((e) => e.name === 'high' && e.reason === 'Conflict')).toEqual([]);
  });

  it('turns an agent failure into Degraded, a failing-node entry, Warning Events, and recovers', async () => {
    const op = c.startOperator();
    c.agents.fail('node-b', addr(1), 'VfioBindFailed', 'bind to vfio-pci: EBUSY');
    await c.createPolicy('gpus', {});

    await eventually(() => {
      const p = c.policy('gpus');
      expect(condition(p, 'Degraded')).toBe('True');
      expect(condition(p, 'Ready')).toBe('False');
      expect(p?.status).toMatchObject({ nodesReady: 1, gpusReady: 3, gpusFailed: 1 });
      expect(p?.status?.failingNodes?.map((f) => f.node)).toEqual(['node-b']);
    });
    await eventually(() => {
      const ev = c.events();
      expect(ev).toContainEqual(expect.objectContaining({ kind: 'GpuPassthrough', name: 'gpus', reason: 'Degraded', type: 'Warning' }));
      expect(ev).toContainEqual(expect.objectContaining({ kind: 'Node', name: 'node-b', reason: 'GpuPassthroughFailed', type: 'Warning' }));
    });
    expect(c.node('node-a')?.metadata.labels?.[READY_LABEL]).toBe('true');
    expect(c.node('node-b')?.metadata.labels?.[READY_LABEL]).toBeUndefined();
    await eventually(() => expect(op.recorder.policies.get('gpus')).toMatchObject({ degraded: true }));

    c.agents.clearFailure('node-b', addr(1));
    await eventually(() => {
      expect(condition(c.policy('gpus'), 'Degraded')).toBe('False');
      expect(condition(c.policy('gpus'), 'Ready')).toBe('True');
      expect(c.node('node-b')?.metadata.labels?.[READY_LABEL]).toBe('true');
    });
    // Reported once per transition, not once per reconcile or resync.
    expect(c.events().filter((e) => e.name === 'gpus' && e.reason === 'Degraded')).toHaveLength(1);
  });
});
