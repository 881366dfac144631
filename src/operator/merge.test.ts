import { describe, expect, it } from 'vitest';
import type { GpuPassthrough } from '../api/v1alpha1/index.js';
import { gpu, node, nodeState, policy } from '../testing/operator-fixtures.js';
import { comparePolicies, mergeCluster, mergeNode, nodeSpecsEqual } from './merge.js';

const inv = [gpu(0), gpu(1), gpu(2, { bootGpu: true, class: '0x030000' })];
const n1 = node('n1', { pool: 'vm' });
const st = (spec = {}) => nodeState('n1', inv, spec);

describe(comparePolicies.name, () => {
  const mk = (name: string, priority: number | undefined, ts: string | undefined) =>
    policy(name, priority === undefined ? {} : { priority }, { creationTimestamp: ts });
  it.each<[string, GpuPassthrough, GpuPassthrough]>([
    ['higher priority first', mk('z', 5, '2026-02-01T00:00:00Z'), mk('a', 1, '2026-01-01T00:00:00Z')],
    ['then older creationTimestamp', mk('z', 0, '2026-01-01T00:00:00Z'), mk('a', 0, '2026-02-01T00:00:00Z')],
    ['then name', mk('a', 0, '2026-01-01T00:00:00Z'), mk('b', 0, '2026-01-01T00:00:00Z')],
    ['absent priority is 0', mk('z', 1, undefined), mk('a', undefined, '2020-01-01T00:00:00Z')],
    ['an unpersisted object (no timestamp) is the newest', mk('z', 0, '2026-05-01T00:00:00Z'), mk('a', 0, undefined)],
    ['Date timestamps compare like strings', mk('z', 0, undefined), mk('a', 0, undefined)],
  ])('%s', (name, winner, loser) => {
    if (name.startsWith('Date')) {
      winner.metadata.creationTimestamp = new Date('2026-01-01T00:00:00Z');
      loser.metadata.creationTimestamp = '2026-01-02T00:00:00Z';
    }
    expect(comparePolicies(winner, loser)).toBeLessThan(0);
    expect(comparePolicies(loser, winner)).toBeGreaterThan(0);
    expect([loser, winner].sort(comparePolicies)[0]).toBe(winner);
  });
});

describe(mergeNode.name, () => {
  it('one policy takes every non-boot GPU, sorted, with explicit defaults', () => {
    const m = mergeNode([policy('p', { resourceName: 'example.com/gpu' })], n1, st());
    expect(m.spec).toEqual({
      gpus: [
        { address: '0000:41:00.0', policy: 'p', allowBootGpu: false, resourceName: 'example.com/gpu' },
        { address: '0000:42:00.0', policy: 'p', allowBootGpu: false, resourceName: 'example.com/gpu' },
      ],
      paused: false,
    });
    expect(m.skippedBootGpus).toEqual([{ node: 'n1', address: '0000:43:00.0', policy: 'p' }]);
    expect(m.matchedPolicies).toEqual(['p']);
    expect(m.conflicts).toEqual([]);
  });

  it('leaves resourceName out when the policy has no override (the plugin default applies)', () => {
    const m = mergeNode([policy('p', { gpus: { addresses: ['0000:41:00.0'] } })], n1, st());
    expect(m.spec.gpus).toEqual([{ address: '0000:41:00.0', policy: 'p', allowBootGpu: false }]);
  });

  it('a policy whose selector misses the node claims nothing', () => {
    const m = mergeNode([policy('p', { nodeSelector: { matchLabels: { pool: 'ci' } } })], n1, st());
    expect(m.spec).toEqual({ gpus: [], paused: false });
    expect(m.matchedPolicies).toEqual([]);
  });

  it('without an inventory nothing is claimed, but the match is known', () => {
    const m = mergeNode([policy('p')], n1, nodeState('n1', undefined));
    expect(m.spec.gpus).toEqual([]);
    expect(m.inventoryKnown).toBe(false);
    expect(m.matchedPolicies).toEqual(['p']);
  });

  it.each([
    ['priority', policy('low', { priority: 1 }), policy('high', { priority: 2 }), 'high'],
    ['age', policy('new', {}, { creationTimestamp: '2026-03-01T00:00:00Z' }), policy('old', {}, { creationTimestamp: '2026-02-01T00:00:00Z' }), 'old'],
    ['name', policy('b'), policy('a'), 'a'],
  ])('a GPU claimed by two policies goes to one by %s; the loser gets Conflict entries', (_why, p1, p2, winner) => {
    for (const order of [[p1, p2], [p2, p1]]) {
      const m = mergeNode(order, n1, st());
      expect(m.spec.gpus.map((g) => g.policy)).toEqual([winner, winner]);
      const loser = winner === p1.metadata.name ? p2.metadata.name : p1.metadata.name;
      expect(m.conflicts).toEqual([
        { node: 'n1', address: '0000:41:00.0', policy: loser, winner },
        { node: 'n1', address: '0000:42:00.0', policy: loser, winner },
      ]);
    }
  });

  it('overlapping policies split the GPUs they do not share', () => {
    const a = policy('a', { gpus: { addresses: ['0000:41:00.0'] }, resourceName: 'example.com/a' });
    const b = policy('b', { resourceName: 'example.com/b' });
    const m = mergeNode([b, a], n1, st());
    expect(m.spec.gpus.map((g) => [g.address, g.policy])).toEqual([
      ['0000:41:00.0', 'a'],
      ['0000:42:00.0', 'b'],
    ]);
    expect(m.conflicts).toEqual([{ node: 'n1', address: '0000:41:00.0', policy: 'b', winner: 'a' }]);
  });

  it('a deleting policy claims nothing', () => {
    const p = policy('p', {}, { deletionTimestamp: '2026-04-01T00:00:00Z' });
    const m = mergeNode([p], n1, st({ gpus: [{ address: '0000:41:00.0', policy: 'p' }] }));
    expect(m.spec.gpus).toEqual([]);
    expect(m.matchedPolicies).toEqual([]);
  });

  it('a deleting winner hands its GPUs to the next policy', () => {
    const dying = policy('a', { priority: 9 }, { deletionTimestamp: '2026-04-01T00:00:00Z' });
    const m = mergeNode([dying, policy('b')], n1, st());
    expect(m.spec.gpus.map((g) => g.policy)).toEqual(['b', 'b']);
    expect(m.conflicts).toEqual([]);
  });

  describe('paused policies', () => {
    const current = { gpus: [{ address: '0000:41:00.0', policy: 'p', resourceName: 'example.com/old', allowBootGpu: false }] };
    it('keep exactly their current claims, even after the selector changed', () => {
      const p = policy('p', { paused: true, resourceName: 'example.com/new', nodeSelector: { matchLabels: { pool: 'other' } } });
      const m = mergeNode([p], n1, st(current));
      expect(m.spec).toEqual({ gpus: [{ address: '0000:41:00.0', policy: 'p', resourceName: 'example.com/old', allowBootGpu: false }], paused: true });
    });
    it('make no new claims', () => {
      const m = mergeNode([policy('p', { paused: true })], n1, st());
      expect(m.spec).toEqual({ gpus: [], paused: false });
    });
    it('hold their GPUs against a higher-priority active policy, which gets a Conflict', () => {
      const m = mergeNode([policy('p', { paused: true }), policy('q', { priority: 100 })], n1, st(current));
      expect(m.spec.gpus.map((g) => [g.address, g.policy])).toEqual([
        ['0000:41:00.0', 'p'],
        ['0000:42:00.0', 'q'],
      ]);
      expect(m.spec.paused).toBe(false); // q still drives the node
      expect(m.conflicts).toEqual([{ node: 'n1', address: '0000:41:00.0', policy: 'q', winner: 'p' }]);
    });
    it('a paused policy being deleted still releases', () => {
      const p = policy('p', { paused: true }, { deletionTimestamp: '2026-04-01T00:00:00Z' });
      expect(mergeNode([p], n1, st(current)).spec).toEqual({ gpus: [], paused: false });
    });
  });

  it('the boot GPU goes only to a policy that allows it, with the permission copied', () => {
    const p = policy('p', { allowBootGpu: true, gpus: { classes: ['0x0300'] }, nodeSelector: { matchLabels: { pool: 'vm' } } });
    const m = mergeNode([p], n1, st());
    expect(m.spec.gpus).toEqual([{ address: '0000:43:00.0', policy: 'p', allowBootGpu: true }]);
  });
});

describe(mergeCluster.name, () => {
  it('indexes claims and conflicts by policy over every node', () => {
    const nodes = [node('n1', { pool: 'vm' }), node('n2', { pool: 'vm' }), node('n3')];
    const states = new Map([
      ['n1', nodeState('n1', [gpu(0)])],
      ['n2', nodeState('n2', [gpu(0), gpu(1)])],
      ['n3', nodeState('n3', [gpu(0)])],
    ]);
    const a = policy('a', { nodeSelector: { matchLabels: { pool: 'vm' } }, priority: 1 });
    const b = policy('b');
    const m = mergeCluster([a, b], nodes, states);
    expect(m.claimsByPolicy.get('a')?.map((c) => `${c.node}/${c.address}`)).toEqual(['n1/0000:41:00.0', 'n2/0000:41:00.0', 'n2/0000:42:00.0']);
    expect(m.claimsByPolicy.get('b')?.map((c) => `${c.node}/${c.address}`)).toEqual(['n3/0000:41:00.0']);
    expect(m.conflictsByPolicy.get('b')).toHaveLength(3);
    expect(m.conflictsByPolicy.get('a')).toBeUndefined();
    expect([...m.nodes.keys()]).toEqual(['n1', 'n2', 'n3']);
  });
});

describe(nodeSpecsEqual.name, () => {
  const g = { address: '0000:41:00.0', policy: 'p' };
  it.each([
    ['absent vs empty', undefined, { gpus: [], paused: false }, true],
    ['server defaults are not drift', { gpus: [g] }, { gpus: [{ ...g, allowBootGpu: false, resourceName: '' }], paused: false }, true],
    ['order does not matter', { gpus: [g, { ...g, address: '0000:42:00.0' }] }, { gpus: [{ ...g, address: '0000:42:00.0' }, g] }, true],
    ['paused differs', { paused: true }, {}, false],
    ['owner differs', { gpus: [g] }, { gpus: [{ ...g, policy: 'q' }] }, false],
    ['resource differs', { gpus: [g] }, { gpus: [{ ...g, resourceName: 'example.com/x' }] }, false],
    ['boot permission differs', { gpus: [g] }, { gpus: [{ ...g, allowBootGpu: true }] }, false],
    ['one more GPU', { gpus: [g] }, { gpus: [g, { ...g, address: '0000:42:00.0' }] }, false],
  ])('%s', (_n, a, b, want) => {
    expect(nodeSpecsEqual(a, b)).toBe(want);
    expect(nodeSpecsEqual(b, a)).toBe(want);
  });
});

describe(`${mergeNode.name}: order and defaults`, () => {
  it('comparePolicies: the same policy compares equal to itself, and equal timestamps fall to the name', () => {
    const a = policy('a', {}, { creationTimestamp: '2026-01-01T00:00:00Z' });
    expect(comparePolicies(a, policy('a', {}, { creationTimestamp: '2026-01-01T00:00:00Z' }))).toBe(0);
    expect(comparePolicies(policy('b', {}, { creationTimestamp: '2026-01-01T00:00:00Z' }), a)).toBe(1);
  });

  it('claims come out in address order whatever order the inventory and policies select them', () => {
    const reversed = nodeState('n1', [gpu(1), gpu(0)], {});
    const m = mergeNode([policy('q', { gpus: { addresses: [gpu(1).address] } }), policy('p')], n1, reversed);
    expect(m.claims.map((c) => c.address)).toEqual([gpu(0).address, gpu(1).address]);
    expect(m.spec.gpus.map((g) => g.address)).toEqual([gpu(0).address, gpu(1).address]);
    expect(m.matchedPolicies).toEqual(['p', 'q']);
  });

  it('a paused claim without resourceName or allowBootGpu keeps the defaults (plugin name, no boot GPU)', () => {
    const current = { gpus: [{ address: '0000:41:00.0', policy: 'p' }] };
    const m = mergeNode([policy('p', { paused: true })], n1, st(current));
    expect(m.claims).toEqual([{ node: 'n1', address: '0000:41:00.0', policy: 'p', resourceName: '', allowBootGpu: false }]);
    expect(m.spec).toEqual({ gpus: [{ address: '0000:41:00.0', policy: 'p', allowBootGpu: false }], paused: true });
  });

  it('knows whether the agent reported an inventory, and a node without a state merges to nothing', () => {
    expect(mergeNode([policy('p')], n1, st()).inventoryKnown).toBe(true);
    const none = mergeNode([policy('p')], n1, undefined);
    expect(none).toMatchObject({ inventoryKnown: false, claims: [], conflicts: [], matchedPolicies: ['p'] });
    expect(none.spec).toEqual({ gpus: [], paused: false });
    expect(mergeNode([policy('p')], n1, nodeState('n1', inv, undefined as never)).spec.gpus.length).toBe(2);
  });
});
