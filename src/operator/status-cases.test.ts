/**
 * Policy status edge cases: which GPUs the Progressing condition lists as leaving (and which it must
 * not), how pending releases are described, the Ready reason when nothing is claimed (boot GPU versus
 * conflicts and missing agents), the Ready and Degraded messages when failures and missing agents mix,
 * the five-item message bound, the resources list, GPUs handed over between policies, and a paused
 * policy whose node was relabelled out.
 */
import { describe, expect, it } from 'vitest';
import type { GpuPassthrough, NodeGpuPassthrough, NodeLike } from '../api/v1alpha1/index.js';
import { gpu, gpuStatus, node, nodeState, policy } from '../testing/operator-fixtures.js';
import { mergeCluster } from './merge.js';
import { computePolicyStatus, conditionOf } from './status.js';

const T0 = Date.parse('2026-05-01T00:00:00Z');
const H100 = 'example.com/h100';
const [A0, A1, A2, A3, A4] = [0, 1, 2, 3, 4].map((i) => gpu(i).address) as [string, string, string, string, string];

function statusOf(p: GpuPassthrough, nodes: NodeLike[], states: NodeGpuPassthrough[], others: GpuPassthrough[] = []) {
  const map = new Map(states.map((s) => [s.metadata.name, s]));
  return computePolicyStatus({ policy: p, nodes, states: map, merge: mergeCluster([p, ...others], nodes, map), now: T0 });
}

const conds = (s: ReturnType<typeof computePolicyStatus>) => (s.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message]);

describe('GPUs leaving a policy', () => {
  it('lists only unclaimed Releasing GPUs under the policy resource name', () => {
    const p = policy('p', { resourceName: H100, gpus: { addresses: [A0] } });
    const st = nodeState('a', [0, 1, 2, 3, 4].map((i) => gpu(i)), { gpus: [{ address: A0, policy: 'p', resourceName: H100 }] }, [
      gpuStatus(A0, 'Ready', { resourceName: H100 }),
      // Not in the spec, still advertised under the name (the agent has not acted yet): not Releasing, not listed.
      gpuStatus(A1, 'Ready', { resourceName: H100 }),
      // Releasing under another policy's name: not ours.
      gpuStatus(A2, 'Releasing', { resourceName: 'other.com/x' }),
      gpuStatus(A3, 'Host'),
      gpuStatus(A4, 'Releasing', { resourceName: H100, reason: 'InUse', message: 'in use by pod vms/vm1' }),
    ]);
    const s = statusOf(p, [node('a')], [st]);
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'True', reason: 'AllGpusReady', message: '1 GPU(s) Ready on 1 node(s)' });
    expect(conditionOf(s, 'Progressing')).toMatchObject({
      status: 'True',
      reason: 'Releasing',
      message: `1 GPU(s) no longer selected by this policy still on vfio-pci: a/${A4} Releasing (in use by pod vms/vm1)`,
    });
  });

  it('a Releasing GPU the node spec now gives to another policy is handed over, not leaving', () => {
    const p = policy('p', { resourceName: H100, gpus: { addresses: [A0] } }, { creationTimestamp: '2026-01-02T00:00:00Z' });
    const q = policy('q', { resourceName: H100, gpus: { addresses: [A0] } }, { creationTimestamp: '2026-01-01T00:00:00Z' });
    const st = nodeState('a', [gpu(0)], { gpus: [{ address: A0, policy: 'q', resourceName: H100 }] }, [gpuStatus(A0, 'Releasing', { resourceName: H100 })]);
    const s = statusOf(p, [node('a')], [st], [q]);
    expect(conds(s)).toEqual([
      ['Ready', 'False', 'NoGpusSelected', 'no GPU claimed: 1 node(s) matched, 1 GPU(s) held by other policies'],
      ['Progressing', 'False', 'Converged', 'no GPU is moving'],
      ['Degraded', 'False', 'AsExpected', 'no GPU failed'],
      ['Conflict', 'True', 'GpuClaimedByOtherPolicy', `1 GPU(s) claimed by another policy: a/${A0} held by q`],
    ]);
  });

  it('a policy without a resourceName never claims a Releasing GPU as its own, even one reported under an empty name', () => {
    const p = policy('p', { gpus: { addresses: [A0] } });
    const st = nodeState('a', [0, 1, 2].map((i) => gpu(i)), { gpus: [{ address: A0, policy: 'p' }] }, [
      gpuStatus(A0, 'Ready', { resourceName: 'nvidia.com/GH100' }),
      gpuStatus(A1, 'Releasing', { resourceName: '' }),
      gpuStatus(A2, 'Releasing'),
    ]);
    const s = statusOf(p, [node('a')], [st]);
    expect(conditionOf(s, 'Progressing')).toMatchObject({ status: 'False', reason: 'Converged', message: 'no GPU is moving' });
  });
});

describe('pending releases of a deleting policy', () => {
  const deleting = policy('p', { resourceName: H100 }, { deletionTimestamp: '2026-05-01T00:00:00Z', finalizers: ['handoff.dev/release'] });

  it('shows the agent message only for InUse; any other reason is shown as the reason', () => {
    const s = computePolicyStatus({
      ...worldOf(deleting),
      pendingRelease: [
        { node: 'a', address: A0, state: 'Releasing', reason: 'SharesIommuGroup', message: '0000:41:00.1 is wanted on vfio-pci' },
        { node: 'a', address: A1, state: 'Releasing', reason: 'InUse' },
        { node: 'a', address: A2, state: 'Releasing', reason: 'InUse', message: 'in use by pod vms/vm2' },
      ],
      now: T0,
    });
    expect(conditionOf(s, 'Progressing')).toMatchObject({
      status: 'True',
      reason: 'Releasing',
      message: `3 GPU(s) not back on the host: a/${A0} Releasing (SharesIommuGroup); a/${A1} Releasing (InUse); a/${A2} Releasing (in use by pod vms/vm2)`,
    });
  });

  it('exactly five pending: all listed, no "and 0 more"', () => {
    const pending = [A0, A1, A2, A3, A4].map((address) => ({ node: 'a', address, state: 'InSpec' as const }));
    const s = computePolicyStatus({ ...worldOf(deleting), pendingRelease: pending, now: T0 });
    expect(conditionOf(s, 'Progressing')?.message).toBe(
      `5 GPU(s) not back on the host: a/${A0} InSpec; a/${A1} InSpec; a/${A2} InSpec; a/${A3} InSpec; a/${A4} InSpec`,
    );
  });

  it('deleting without our finalizer (nothing to wait for, no pending list): Progressing False Released', () => {
    const foreign = policy('p', {}, { deletionTimestamp: '2026-05-01T00:00:00Z', finalizers: ['example.com/other'] });
    const s = computePolicyStatus({ ...worldOf(foreign), now: T0 });
    expect(conds(s).slice(0, 2)).toEqual([
      ['Ready', 'False', 'Deleting', 'the policy is being deleted'],
      ['Progressing', 'False', 'Released', 'every GPU is back on the host'],
    ]);
  });

  function worldOf(p: GpuPassthrough) {
    const nodes = [node('a')];
    const states = new Map([['a', nodeState('a', [gpu(0)])]]);
    return { policy: p, nodes, states, merge: mergeCluster([p], nodes, states) };
  }
});

describe('Ready reason when nothing is claimed', () => {
  const boot = gpu(0, { bootGpu: true });

  it('nothing to select on a reporting node: NoGpusSelected, not BootGpuNotAllowed', () => {
    const s = statusOf(policy('p'), [node('a')], [nodeState('a', [])]);
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'NoGpusSelected', message: 'no GPU claimed: 1 node(s) matched' });
  });

  it('only a boot GPU nobody holds: BootGpuNotAllowed, and no holder named', () => {
    const s = statusOf(policy('p'), [node('a')], [nodeState('a', [boot])]);
    expect(conditionOf(s, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'BootGpuNotAllowed',
      message: `no GPU claimed: 1 node(s) matched, 1 boot GPU(s) skipped: a/${A0} is a boot GPU and this policy does not set allowBootGpu`,
    });
  });

  it('another policy holding a different GPU of the node is not named as the boot GPU holder', () => {
    const p = policy('p', { gpus: { addresses: [A0] } });
    const q = policy('q', { gpus: { addresses: [A1] } });
    const s = statusOf(p, [node('a')], [nodeState('a', [boot, gpu(1)])], [q]);
    expect(conditionOf(s, 'Ready')).toMatchObject({
      reason: 'BootGpuNotAllowed',
      message: `no GPU claimed: 1 node(s) matched, 1 boot GPU(s) skipped: a/${A0} is a boot GPU and this policy does not set allowBootGpu`,
    });
  });

  it('a skipped boot GPU and a conflict: NoGpusSelected (the conflict is the telling part)', () => {
    const p = policy('p', { gpus: { addresses: [A0, A1] } }, { creationTimestamp: '2026-01-02T00:00:00Z' });
    const q = policy('q', { gpus: { addresses: [A1] } }, { creationTimestamp: '2026-01-01T00:00:00Z' });
    const s = statusOf(p, [node('a')], [nodeState('a', [boot, gpu(1)])], [q]);
    expect(conditionOf(s, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'NoGpusSelected',
      message: `no GPU claimed: 1 node(s) matched, 1 GPU(s) held by other policies, 1 boot GPU(s) skipped: a/${A0} is a boot GPU and this policy does not set allowBootGpu`,
    });
  });

  it('a skipped boot GPU and a node without an agent: NoGpusSelected (the other node may have GPUs)', () => {
    const s = statusOf(policy('p'), [node('a'), node('b')], [nodeState('a', [boot])]);
    expect(conditionOf(s, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'NoGpusSelected',
      message: `no GPU claimed: 2 node(s) matched, 1 without an agent report, 1 boot GPU(s) skipped: a/${A0} is a boot GPU and this policy does not set allowBootGpu`,
    });
  });
});

describe('Ready and Degraded messages', () => {
  it('a failed GPU on one node and a missing agent on another: each counted once, by kind', () => {
    const p = policy('p', { resourceName: H100 });
    const st = nodeState('a', [gpu(0)], { gpus: [{ address: A0, policy: 'p', resourceName: H100 }] }, [gpuStatus(A0, 'Failed', { reason: 'GroupNotViable' })]);
    const s = statusOf(p, [node('a'), node('b')], [st]);
    expect(conds(s).slice(0, 3)).toEqual([
      ['Ready', 'False', 'GpusFailed', '0 of 1 GPU(s) Ready; 1 matched node(s) without an agent report: b; 1 Failed'],
      ['Progressing', 'False', 'Converged', 'no GPU is moving'],
      ['Degraded', 'True', 'GpusFailed', '1 GPU(s) Failed on 1 node(s)'],
    ]);
  });

  it('GPUs still on their way: the Ready message says how many', () => {
    const p = policy('p', { resourceName: H100 });
    const spec = { gpus: [A0, A1].map((address) => ({ address, policy: 'p', resourceName: H100 })) };
    const st = nodeState('a', [gpu(0), gpu(1)], spec, [gpuStatus(A0, 'Ready', { resourceName: H100 }), gpuStatus(A1, 'Preparing', { resourceName: H100 })]);
    const s = statusOf(p, [node('a')], [st]);
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'Preparing', message: '1 of 2 GPU(s) Ready; 1 on their way to vfio-pci' });
  });

  it('a failing node with exactly five failed GPUs lists all five, no "and 0 more"', () => {
    const inv = [0, 1, 2, 3, 4].map((i) => gpu(i));
    const st = nodeState('a', inv, { gpus: inv.map((g) => ({ address: g.address, policy: 'p' })) }, inv.map((g) => gpuStatus(g.address, 'Failed', { reason: 'GroupNotViable' })));
    const s = statusOf(policy('p'), [node('a')], [st]);
    expect(s.failingNodes).toEqual([
      { node: 'a', reason: 'GroupNotViable', message: `${A0}: GroupNotViable; ${A1}: GroupNotViable; ${A2}: GroupNotViable; ${A3}: GroupNotViable; ${A4}: GroupNotViable` },
    ]);
  });
});

describe('GPUs changing hands and nodes changing labels', () => {
  it('a GPU the merge gives to this policy while the node spec still names the previous owner is not Ready yet', () => {
    // q was deleted; p now selects the GPU, but the spec (and the agent's Ready) still belong to q.
    const p = policy('p', { resourceName: H100, gpus: { addresses: [A0] } });
    const st = nodeState('a', [gpu(0)], { gpus: [{ address: A0, policy: 'q', resourceName: H100 }] }, [gpuStatus(A0, 'Ready', { resourceName: H100 })]);
    const s = statusOf(p, [node('a')], [st]);
    expect(s).toMatchObject({ gpusDesired: 1, gpusReady: 0, nodesReady: 0 });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'Preparing', message: '0 of 1 GPU(s) Ready; 1 on their way to vfio-pci' });
    expect(conditionOf(s, 'Progressing')).toMatchObject({ status: 'True', reason: 'Preparing', message: '1 GPU(s) on their way to vfio-pci' });
  });

  it('a paused policy keeps counting the node it still holds GPUs on after the node was relabelled out', () => {
    const p = policy('p', { paused: true, resourceName: H100, nodeSelector: { matchLabels: { pool: 'vm' } } });
    const st = nodeState('a', [gpu(0)], { gpus: [{ address: A0, policy: 'p', resourceName: H100 }] }, [gpuStatus(A0, 'Ready', { resourceName: H100 })]);
    const s = statusOf(p, [node('a', { pool: 'other' })], [st]);
    expect(s).toMatchObject({ nodesMatched: 1, nodesReady: 1, gpusDesired: 1, gpusReady: 1, gpusFailed: 0 });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'True', reason: 'AllGpusReady', message: '1 GPU(s) Ready on 1 node(s)' });
  });

  it('an agent report with an inventory but no per-GPU list yet: the claimed GPU is on its way', () => {
    const p = policy('p', { resourceName: H100 });
    const st: NodeGpuPassthrough = { ...nodeState('a', undefined, { gpus: [{ address: A0, policy: 'p', resourceName: H100 }] }), status: { inventory: [gpu(0)] } };
    const s = statusOf(p, [node('a')], [st]);
    expect(s).toMatchObject({ gpusDesired: 1, gpusReady: 0, gpusFailed: 0, nodesMatched: 1, failingNodes: [] });
    expect(conditionOf(s, 'Ready')).toMatchObject({ status: 'False', reason: 'Preparing', message: '0 of 1 GPU(s) Ready; 1 on their way to vfio-pci' });
  });
});

describe('resources and the status shape', () => {
  it('the policy resourceName is listed once it claims, before the agent reports it', () => {
    const p = policy('p', { resourceName: H100 });
    const st = nodeState('a', [gpu(0)], { gpus: [{ address: A0, policy: 'p', resourceName: H100 }] }, [gpuStatus(A0, 'Preparing')]);
    expect(statusOf(p, [node('a')], [st]).resources).toEqual([H100]);
  });

  it('resource names the agents report are sorted', () => {
    const st = (name: string, resourceName: string) =>
      nodeState(name, [gpu(0)], { gpus: [{ address: A0, policy: 'p' }] }, [gpuStatus(A0, 'Ready', { resourceName })]);
    const s = statusOf(policy('p'), [node('a'), node('b')], [st('a', 'vendor.com/zeta'), st('b', 'vendor.com/alpha')]);
    expect(s.resources).toEqual(['vendor.com/alpha', 'vendor.com/zeta']);
  });

  it('a policy without a generation: the status has no observedGeneration key at all', () => {
    const p = policy('p', {}, { generation: undefined });
    const s = statusOf(p, [node('a')], [nodeState('a', [])]);
    expect(Object.keys(s).sort()).toEqual(['conditions', 'failingNodes', 'gpusDesired', 'gpusFailed', 'gpusReady', 'nodesMatched', 'nodesReady', 'resources']);
  });

  it('conditionOf: no status, or a status without conditions, has no condition', () => {
    expect(conditionOf(undefined, 'Ready')).toBeUndefined();
    expect(conditionOf({ nodesMatched: 0 }, 'Ready')).toBeUndefined();
  });
});
