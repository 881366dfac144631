import { describe, expect, it } from 'vitest';
import { eventName, MAX_EVENT_NAME } from '../kube/events.js';
import { gpu, gpuStatus, node, nodeState, policy } from '../testing/operator-fixtures.js';
import { mergeCluster } from './merge.js';
import type { ClusterView, Write } from './plan.js';
import { ORPHAN_GRACE_MS, reconcileNode, reconcilePolicy } from './plan.js';
import { computePolicyStatus, conditionOf } from './status.js';

/** Issue 17 items 6–8 and issue 10 item 6: status and Events that say what is happening. */
const NOW = Date.parse('2026-05-01T00:00:00Z');

function view(over: Partial<ClusterView>): ClusterView {
  return { policies: [], nodes: [], states: new Map(), now: NOW, ...over };
}

describe('policy status explains itself', () => {
  it('two policies select the boot GPU, only one may take it: the other names the boot GPU and its holder', () => {
    const boot = gpu(0, { bootGpu: true });
    const consoleP = policy('console-gpus', { allowBootGpu: true, gpus: { addresses: [boot.address] } }, { creationTimestamp: '2026-01-01T00:00:00Z' });
    const vms = policy('vm-gpus', { gpus: { addresses: [boot.address] } }, { creationTimestamp: '2026-01-02T00:00:00Z' });
    const states = new Map([['n1', nodeState('n1', [boot])]]);
    const nodes = [node('n1')];
    const merge = mergeCluster([consoleP, vms], nodes, states);
    const s = computePolicyStatus({ policy: vms, nodes, states, merge, now: NOW });
    const ready = conditionOf(s, 'Ready')!;
    expect(ready).toMatchObject({ status: 'False', reason: 'BootGpuNotAllowed' });
    expect(ready.message).toContain(`n1/${boot.address} is a boot GPU and this policy does not set allowBootGpu (policy console-gpus holds it)`);
  });

  it('a node without an agent: the Ready message names it and never reads like success', () => {
    const p = policy('p', { resourceName: 'example.com/h100' });
    const withAgent = nodeState('n1', [gpu(0)], { gpus: [{ address: gpu(0).address, policy: 'p', resourceName: 'example.com/h100' }] }, [gpuStatus(gpu(0).address, 'Ready', { resourceName: 'example.com/h100' })]);
    const states = new Map([['n1', withAgent]]);
    const nodes = [node('n1'), node('n2')];
    const s = computePolicyStatus({ policy: p, nodes, states, merge: mergeCluster([p], nodes, states), now: NOW });
    const ready = conditionOf(s, 'Ready')!;
    expect(ready).toMatchObject({ status: 'False', reason: 'AgentNotReporting' });
    expect(ready.message).toBe('1 of 1 GPU(s) Ready; 1 matched node(s) without an agent report: n2');
  });

  it('a deleting policy waiting for a pod names the pod, in the condition and in an Event', () => {
    const a = gpu(0).address;
    const p = policy('p', { resourceName: 'example.com/h100' }, { deletionTimestamp: '2026-04-30T00:00:00Z', finalizers: ['handoff.dev/release'] });
    const state = nodeState('n1', [gpu(0)], { gpus: [] }, [
      gpuStatus(a, 'Releasing', { reason: 'InUse', message: 'in use by pod vms/virt-launcher-vm1-abcde; released when the pod ends', resourceName: 'example.com/h100' }),
    ]);
    const writes = reconcilePolicy('p', view({ policies: [p], nodes: [node('n1')], states: new Map([['n1', state]]) }));
    const status = writes.find((w): w is Extract<Write, { kind: 'patchPolicyStatus' }> => w.kind === 'patchPolicyStatus')!.status;
    expect(conditionOf(status, 'Progressing')?.message).toBe(`1 GPU(s) not back on the host: n1/${a} Releasing (in use by pod vms/virt-launcher-vm1-abcde; released when the pod ends)`);
    const ev = writes.find((w) => w.kind === 'event' && w.reason === 'WaitingForPod');
    expect(ev).toMatchObject({ type: 'Normal', regarding: { kind: 'GpuPassthrough', name: 'p' } });
    expect((ev as { message: string }).message).toContain('vms/virt-launcher-vm1-abcde');
  });

  it('a node relabelled out of a policy while its GPU is in use: the policy shows the GPU leaving and the pod', () => {
    const a = gpu(0).address;
    const p = policy('p', { resourceName: 'example.com/h100', nodeSelector: { matchLabels: { pool: 'vm' } } });
    const state = nodeState('n1', [gpu(0)], { gpus: [] }, [
      gpuStatus(a, 'Releasing', { reason: 'InUse', message: 'in use by pod vms/vm1; released when the pod ends', resourceName: 'example.com/h100' }),
    ]);
    const nodes = [node('n1', { pool: 'other' })];
    const states = new Map([['n1', state]]);
    const s = computePolicyStatus({ policy: p, nodes, states, merge: mergeCluster([p], nodes, states), now: NOW });
    expect(conditionOf(s, 'Progressing')).toMatchObject({ status: 'True', reason: 'Releasing' });
    expect(conditionOf(s, 'Progressing')?.message).toBe(`1 GPU(s) no longer selected by this policy still on vfio-pci: n1/${a} Releasing (in use by pod vms/vm1; released when the pod ends)`);
  });

  it('200 policies and one node without an agent: one Node Event message for all of them (aggregated by the recorder)', () => {
    const policies = Array.from({ length: 200 }, (_, i) => policy(`p${i}`));
    const states = new Map([['n1', nodeState('n1', [gpu(0)])]]);
    const v = view({ policies, nodes: [node('n1'), node('lonely')], states });
    const nodeEvents = policies.flatMap((p) => reconcilePolicy(p.metadata.name, v)).filter((w) => w.kind === 'event' && w.regarding.kind === 'Node');
    expect(nodeEvents).toHaveLength(200);
    // EventRecorder aggregates on (object, type, reason, message): one Event with count 200.
    expect(new Set(nodeEvents.map((e) => JSON.stringify(e))).size).toBe(1);
  });

  it('Event names stay within 253 characters for a 253-character object name', () => {
    const long = `${'a'.repeat(120)}.${'b'.repeat(120)}-${'c'.repeat(11)}`;
    expect(long).toHaveLength(253);
    const name = eventName(long, '18a3f1c2d4e5f607');
    expect(name.length).toBeLessThanOrEqual(MAX_EVENT_NAME);
    expect(name).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
    expect(eventName('short', 'ff')).toBe('short.ff');
  });
});

describe('owner references and orphans (issue 17 item 6)', () => {
  const orphan = (created: string, owners?: { apiVersion: string; kind: string; name: string; uid: string }[]) =>
    nodeState('ghost', [gpu(0)], {}, [], { creationTimestamp: created, uid: 'u-ghost', resourceVersion: '7', ...(owners ? { ownerReferences: owners } : {}) });

  it('adds the Node owner reference once the Node exists, alone and with the resourceVersion read', () => {
    const state = nodeState('n1', [gpu(0)], {}, [], { resourceVersion: '5' });
    const n = { metadata: { name: 'n1', labels: {}, uid: 'node-uid', resourceVersion: '9' } };
    expect(reconcileNode('n1', view({ nodes: [n], states: new Map([['n1', state]]) }))).toEqual([
      { kind: 'setNodeOwner', node: 'n1', ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'node-uid' }], resourceVersion: '5' },
    ]);
  });

  it('reports and deletes an unowned NodeGpuPassthrough whose Node is missing after the grace period, not before', () => {
    const fresh = orphan(new Date(NOW - ORPHAN_GRACE_MS + 60_000).toISOString());
    expect(reconcileNode('ghost', view({ states: new Map([['ghost', fresh]]) }))).toEqual([]);
    const old = orphan(new Date(NOW - ORPHAN_GRACE_MS - 1).toISOString());
    const writes = reconcileNode('ghost', view({ states: new Map([['ghost', old]]) }));
    expect(writes.map((w) => w.kind)).toEqual(['event', 'deleteOrphan']);
    expect(writes[0]).toMatchObject({ type: 'Warning', reason: 'Orphaned', regarding: { kind: 'NodeGpuPassthrough', name: 'ghost', uid: 'u-ghost' } });
    expect(writes[1]).toEqual({ kind: 'deleteOrphan', node: 'ghost', uid: 'u-ghost', resourceVersion: '7' });
  });

  it('leaves an object owned by a (deleted) Node to the garbage collector', () => {
    const owned = orphan('2020-01-01T00:00:00Z', [{ apiVersion: 'v1', kind: 'Node', name: 'ghost', uid: 'gone' }]);
    expect(reconcileNode('ghost', view({ states: new Map([['ghost', owned]]) }))).toEqual([]);
  });
});

describe('every leader write carries a precondition (issue 17 item 8)', () => {
  it('node spec, node label and policy status name the resourceVersion they were planned from', () => {
    const a = gpu(0).address;
    const p = policy('p', { resourceName: 'example.com/h100' }, { resourceVersion: '31', finalizers: ['handoff.dev/release'] });
    const state = nodeState('n1', [gpu(0)], { gpus: [{ address: a, policy: 'p', resourceName: 'example.com/h100' }] }, [gpuStatus(a, 'Ready', { resourceName: 'example.com/h100' })], {
      resourceVersion: '12',
      ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'node-uid' }],
    });
    const n = { metadata: { name: 'n1', labels: {}, uid: 'node-uid', resourceVersion: '40' } };
    const v = view({ policies: [p], nodes: [n], states: new Map([['n1', state]]) });
    const nodeWrites = reconcileNode('n1', v);
    expect(nodeWrites.find((w) => w.kind === 'labelNode')).toMatchObject({ resourceVersion: '40' });
    const policyWrites = reconcilePolicy('p', v);
    expect(policyWrites.find((w) => w.kind === 'patchPolicyStatus')).toMatchObject({ resourceVersion: '31' });
  });
});
