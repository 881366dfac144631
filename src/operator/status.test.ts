import { describe, expect, it } from 'vitest';
import type { GpuPassthrough, NodeGpuPassthrough, NodeLike } from '../api/v1alpha1/index.js';
import { gpu, gpuStatus, node, nodeState, policy } from '../testing/operator-fixtures.js';
import { mergeCluster } from './merge.js';
import { applyCondition, computePolicyStatus, conditionOf, policyStatusEqual } from './status.js';

const T0 = Date.parse('2026-05-01T00:00:00Z');
const T1 = T0 + 60_000;

function world(p: GpuPassthrough, nodes: NodeLike[], states: NodeGpuPassthrough[], others: GpuPassthrough[] = []) {
  const map = new Map(states.map((s) => [s.metadata.name, s]));
  const merge = mergeCluster([p, ...others], nodes, map);
  return { policy: p, nodes, states: map, merge };
}

/** A node whose spec already gives policy `p` GPUs 0 and 1, with the given phases. */
function claimed(name: string, phases: Array<'Ready' | 'Preparing' | 'Failed' | undefined>, policyName = 'p') {
  const inv = phases.map((_, i) => gpu(i));
  const spec = { gpus: inv.map((g) => ({ address: g.address, policy: policyName, resourceName: 'example.com/h100' })) };
  const statuses = inv.flatMap((g, i) =>
    phases[i] === undefined ? [] : [gpuStatus(g.address, phases[i]!, phases[i] === 'Failed' ? { reason: 'GroupNotViable', message: 'audio function busy' } : { resourceName: 'example.com/h100' })],
  );
  return nodeState(name, inv, spec, statuses);
}

const p = policy('p', { resourceName: 'example.com/h100' });

describe(computePolicyStatus.name, () => {
  it('all GPUs Ready: Ready True, counts, resources', () => {
    const s = computePolicyStatus({ ...world(p, [node('a'), node('b')], [claimed('a', ['Ready', 'Ready']), claimed('b', ['Ready'])]), now: T0 });
    expect(s).toMatchObject({ observedGeneration: 1, nodesMatched: 2, nodesReady: 2, gpusDesired: 3, gpusReady: 3, gpusFailed: 0, failingNodes: [], resources: ['example.com/h100'] });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'True', reason: 'AllGpusReady', lastTransitionTime: new Date(T0).toISOString(), observedGeneration: 1 });
    expect(conditionOf(s, 'Progressing')).toMatchObject({ status: 'False', reason: 'Converged' });
    expect(conditionOf(s, 'Degraded')).toMatchObject({ status: 'False' });
    expect(conditionOf(s, 'Conflict')).toMatchObject({ status: 'False' });
  });

  it('GPUs still moving: Progressing True, Ready False/Preparing', () => {
    const s = computePolicyStatus({ ...world(p, [node('a')], [claimed('a', ['Ready', 'Preparing'])]), now: T0 });
    expect(s).toMatchObject({ gpusReady: 1, nodesReady: 0 });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'Preparing' });
    expect(conditionOf(s, 'Progressing')).toMatchObject({ status: 'True', reason: 'Preparing', message: '1 GPU(s) on their way to vfio-pci' });
  });

  it('a failed GPU: Degraded True and the node in failingNodes with the agent reason', () => {
    const s = computePolicyStatus({ ...world(p, [node('a'), node('b')], [claimed('a', ['Ready', 'Failed']), claimed('b', ['Ready'])]), now: T0 });
    expect(s.gpusFailed).toBe(1);
    expect(s.failingNodes).toEqual([{ node: 'a', reason: 'GroupNotViable', message: '0000:42:00.0: GroupNotViable (audio function busy)' }]);
    expect(conditionOf(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'GpusFailed' });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'GpusFailed' });
  });

  it('a matched node without an agent report is failing and Degraded', () => {
    const s = computePolicyStatus({ ...world(p, [node('a'), node('b')], [claimed('a', ['Ready'])]), now: T0 });
    expect(s.failingNodes).toEqual([{ node: 'b', reason: 'AgentNotReporting', message: 'no NodeGpuPassthrough for this node' }]);
    expect(conditionOf(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'AgentNotReporting' });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'AgentNotReporting' });
  });

  it('a Ready phase does not count before the spec names the GPU for this policy', () => {
    const st = nodeState('a', [gpu(0)], {}, [gpuStatus(gpu(0).address, 'Ready')]);
    const s = computePolicyStatus({ ...world(p, [node('a')], [st]), now: T0 });
    expect(s).toMatchObject({ gpusDesired: 1, gpusReady: 0 });
  });

  it('failingNodes is bounded at 20 and sorted by node', () => {
    const names = Array.from({ length: 25 }, (_, i) => `n${String(i).padStart(2, '0')}`);
    const s = computePolicyStatus({ ...world(p, names.map((n) => node(n)), names.map((n) => claimed(n, ['Failed']))), now: T0 });
    expect(s.failingNodes).toHaveLength(20);
    expect(s.failingNodes?.[0]?.node).toBe('n00');
    expect(s.gpusFailed).toBe(25);
  });

  it('Conflict True names the winner', () => {
    const q = policy('q', { priority: 5 });
    const s = computePolicyStatus({ ...world(p, [node('a')], [nodeState('a', [gpu(0)])], [q]), now: T0 });
    expect(s.gpusDesired).toBe(0);
    expect(conditionOf(s, 'Conflict')).toMatchObject({ status: 'True', reason: 'GpuClaimedByOtherPolicy', message: expect.stringContaining('a/0000:41:00.0 held by q') });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'NoGpusSelected' });
  });

  it('paused: Progressing False/Paused', () => {
    const paused = policy('p', { paused: true, resourceName: 'example.com/h100' });
    const s = computePolicyStatus({ ...world(paused, [node('a')], [claimed('a', ['Preparing'])]), now: T0 });
    expect(conditionOf(s, 'Progressing')).toMatchObject({ status: 'False', reason: 'Paused' });
  });

  it('deleting: Ready False/Deleting, Progressing while GPUs are not home', () => {
    const dying = policy('p', {}, { deletionTimestamp: '2026-05-01T00:00:00Z' });
    const s = computePolicyStatus({ ...world(dying, [node('a')], [claimed('a', ['Ready'])]), pendingRelease: [{ node: 'a', address: '0000:41:00.0', state: 'Releasing', reason: 'InUse' }], now: T0 });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'Deleting' });
    expect(conditionOf(s, 'Progressing')).toMatchObject({ status: 'True', reason: 'Releasing', message: expect.stringContaining('a/0000:41:00.0 Releasing') });
  });

  it('lastTransitionTime moves only when a status flips, and an unchanged world yields an equal status', () => {
    const w = world(p, [node('a')], [claimed('a', ['Preparing'])]);
    const first = computePolicyStatus({ ...w, now: T0 });
    const withFirst = { ...p, status: first };
    const same = computePolicyStatus({ ...world(withFirst, [node('a')], [claimed('a', ['Preparing'])]), now: T1 });
    expect(policyStatusEqual(first, same)).toBe(true);
    const flipped = computePolicyStatus({ ...world(withFirst, [node('a')], [claimed('a', ['Ready'])]), now: T1 });
    expect(conditionOf(flipped, 'Ready')?.lastTransitionTime).toBe(new Date(T1).toISOString());
    expect(conditionOf(flipped, 'Degraded')?.lastTransitionTime).toBe(new Date(T0).toISOString());
    expect(policyStatusEqual(first, flipped)).toBe(false);
  });
});

describe(applyCondition.name, () => {
  const prev = [{ type: 'Ready', status: 'False' as const, reason: 'Preparing', message: 'x', lastTransitionTime: '2026-01-01T00:00:00.000Z' }];
  it('keeps lastTransitionTime when only reason or message change', () => {
    expect(applyCondition(prev, { type: 'Ready', status: 'False', reason: 'GpusFailed', message: 'y' }, T1, 2)).toEqual({
      type: 'Ready', status: 'False', reason: 'GpusFailed', message: 'y', lastTransitionTime: '2026-01-01T00:00:00.000Z', observedGeneration: 2,
    });
  });
  it('sets it to now on a flip or a new condition', () => {
    expect(applyCondition(prev, { type: 'Ready', status: 'True', reason: 'A', message: '' }, T1, undefined).lastTransitionTime).toBe(new Date(T1).toISOString());
    expect(applyCondition(undefined, { type: 'Conflict', status: 'False', reason: 'A', message: '' }, new Date(T0), 1).lastTransitionTime).toBe(new Date(T0).toISOString());
  });
});

describe(policyStatusEqual.name, () => {
  it('ignores key order but not values', () => {
    expect(policyStatusEqual({ nodesMatched: 1, gpusReady: 2 }, { gpusReady: 2, nodesMatched: 1 })).toBe(true);
    expect(policyStatusEqual({ nodesMatched: 1 }, { nodesMatched: 2 })).toBe(false);
    expect(policyStatusEqual(undefined, {})).toBe(true);
  });
});

describe(`${computePolicyStatus.name}: every condition says why`, () => {
  const conds = (s: ReturnType<typeof computePolicyStatus>) => (s.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message]);

  it('all Ready', () => {
    const s = computePolicyStatus({ ...world(p, [node('a'), node('b')], [claimed('a', ['Ready', 'Ready']), claimed('b', ['Ready'])]), now: T0 });
    expect(conds(s)).toEqual([
      ['Ready', 'True', 'AllGpusReady', '3 GPU(s) Ready on 2 node(s)'],
      ['Progressing', 'False', 'Converged', 'no GPU is moving'],
      ['Degraded', 'False', 'AsExpected', 'no GPU failed'],
      ['Conflict', 'False', 'NoConflict', 'no GPU selected by this policy is held by another'],
    ]);
  });

  it('some Failed, some Ready: how many of how many, and on how many nodes', () => {
    const s = computePolicyStatus({ ...world(p, [node('a'), node('b')], [claimed('a', ['Ready', 'Failed']), claimed('b', ['Failed'])]), now: T0 });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'GpusFailed', message: '1 of 3 GPU(s) Ready; 2 Failed' });
    expect(conditionOf(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'GpusFailed', message: '2 GPU(s) Failed on 2 node(s)' });
    expect(conditionOf(s, 'Progressing')).toMatchObject({ status: 'False', reason: 'Converged' });
  });

  it('an agent missing while GPUs still move is Preparing; when nothing else moves it is AgentNotReporting', () => {
    const moving = computePolicyStatus({ ...world(p, [node('a'), node('b')], [claimed('a', ['Ready', 'Preparing'])]), now: T0 });
    expect(conditionOf(moving, 'Ready')).toMatchObject({ reason: 'Preparing' });
    expect(conditionOf(moving, 'Degraded')).toMatchObject({ status: 'True', reason: 'AgentNotReporting', message: '1 matched node(s) without an agent report' });
    const still = computePolicyStatus({ ...world(p, [node('a'), node('b')], [claimed('a', ['Ready'])]), now: T0 });
    expect(conditionOf(still, 'Ready')).toMatchObject({ reason: 'AgentNotReporting', message: '1 of 1 GPU(s) Ready; 1 matched node(s) without an agent report: b' });
    // A state without an inventory yet is told apart from no state at all.
    const noInventory = computePolicyStatus({ ...world(p, [node('a')], [nodeState('a', undefined)]), now: T0 });
    expect(noInventory.failingNodes).toEqual([{ node: 'a', reason: 'AgentNotReporting', message: 'the node agent has not reported an inventory yet' }]);
  });

  it('nothing claimed: the message counts matched nodes, missing agents and conflicts', () => {
    const q = policy('q', { priority: 5 });
    const lost = computePolicyStatus({ ...world(p, [node('a')], [nodeState('a', [gpu(0)])], [q]), now: T0 });
    expect(conditionOf(lost, 'Ready')).toMatchObject({ reason: 'NoGpusSelected', message: 'no GPU claimed: 1 node(s) matched, 1 GPU(s) held by other policies' });
    const silent = computePolicyStatus({ ...world(p, [node('a'), node('b')], [nodeState('a', [])]), now: T0 });
    expect(conditionOf(silent, 'Ready')).toMatchObject({ reason: 'NoGpusSelected', message: 'no GPU claimed: 2 node(s) matched, 1 without an agent report' });
    const none = computePolicyStatus({ ...world(p, [node('a')], [nodeState('a', [])]), now: T0 });
    expect(conditionOf(none, 'Ready')).toMatchObject({ message: 'no GPU claimed: 1 node(s) matched' });
    // A node the policy does not select is not counted.
    const other = computePolicyStatus({ ...world(policy('p', { nodeSelector: { matchLabels: { gpu: 'yes' } } }), [node('a')], [nodeState('a', [gpu(0)])]), now: T0 });
    expect(other.nodesMatched).toBe(0);
  });

  it('paused: Progressing False Paused', () => {
    const paused = policy('p', { resourceName: 'example.com/h100', paused: true });
    const s = computePolicyStatus({ ...world(paused, [node('a')], [claimed('a', ['Ready', 'Preparing'])]), now: T0 });
    expect(conditionOf(s, 'Progressing')).toMatchObject({ status: 'False', reason: 'Paused', message: 'the policy is paused: no changes are made' });
  });

  it('deleting: Ready False, and Progressing lists what is not back yet (at most 5, then a count)', () => {
    const deleting = policy('p', {}, { deletionTimestamp: '2026-05-01T00:00:00Z', finalizers: ['handoff.dev/release'] });
    const pending = Array.from({ length: 7 }, (_, i) => ({ node: 'a', address: gpu(i).address, state: 'InSpec' as const }));
    const s = computePolicyStatus({ ...world(deleting, [node('a')], [nodeState('a', [gpu(0)])]), pendingRelease: pending, now: T0 });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'Deleting', message: 'the policy is being deleted' });
    expect(conditionOf(s, 'Progressing')).toMatchObject({
      status: 'True',
      reason: 'Releasing',
      message: '7 GPU(s) not back on the host: a/0000:41:00.0 InSpec; a/0000:42:00.0 InSpec; a/0000:43:00.0 InSpec; a/0000:44:00.0 InSpec; a/0000:45:00.0 InSpec; and 2 more',
    });
    const done = computePolicyStatus({ ...world(deleting, [node('a')], [nodeState('a', [gpu(0)])]), pendingRelease: [], now: T0 });
    expect(conditionOf(done, 'Progressing')).toMatchObject({ status: 'False', reason: 'Released', message: 'every GPU is back on the host' });
  });

  it('resources: the policy override once it claims, else the names the agents report', () => {
    const plain = policy('p');
    const inv = [gpu(0)];
    const st = nodeState('a', inv, { gpus: [{ address: inv[0]!.address, policy: 'p' }] }, [gpuStatus(inv[0]!.address, 'Ready', { resourceName: 'nvidia.com/GH100' })]);
    expect(computePolicyStatus({ ...world(plain, [node('a')], [st]), now: T0 }).resources).toEqual(['nvidia.com/GH100']);
    const unclaimed = computePolicyStatus({ ...world(policy('p', { resourceName: 'example.com/x' }), [node('a')], [nodeState('a', [])]), now: T0 });
    expect(unclaimed.resources ?? []).toEqual([]);
  });

  it('a node with many failed GPUs: the first five, then a count; nodes sorted', () => {
    const six = (name: string) => {
      const inv = Array.from({ length: 6 }, (_, i) => gpu(i));
      return nodeState(name, inv, { gpus: inv.map((g) => ({ address: g.address, policy: 'p' })) }, inv.map((g) => gpuStatus(g.address, 'Failed')));
    };
    const s = computePolicyStatus({ ...world(policy('p'), [node('z'), node('b')], [six('z'), six('b')]), now: new Date(T0) });
    expect(s.failingNodes!.map((f) => f.node)).toEqual(['b', 'z']);
    expect(s.failingNodes![0]).toEqual({
      node: 'b',
      reason: 'GpuFailed',
      message: '0000:41:00.0: GpuFailed; 0000:42:00.0: GpuFailed; 0000:43:00.0: GpuFailed; 0000:44:00.0: GpuFailed; 0000:45:00.0: GpuFailed; and 1 more',
    });
    expect(conditionOf(s, 'Ready')?.lastTransitionTime).toBe(new Date(T0).toISOString());
  });

  it('no generation: conditions carry no observedGeneration', () => {
    const s = computePolicyStatus({ ...world(policy('p', {}, { generation: undefined }), [node('a')], [claimed('a', ['Ready'])]), now: T0 });
    expect(conditionOf(s, 'Ready')).not.toHaveProperty('observedGeneration');
  });
});
