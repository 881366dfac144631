/**
 * Policy merge, cases the main suite leaves open: a node's matchedPolicies is listed by policy name
 * (deterministic output), not in the conflict order (priority, age, name) the merge walks the policies in.
 */
import { describe, expect, it } from 'vitest';
import { gpu, node, nodeState, policy } from '../testing/operator-fixtures.js';
import { mergeNode } from './merge.js';

describe('mergeNode matchedPolicies', () => {
  it('is sorted by name whatever the priorities and creation times', () => {
    const ps = [
      policy('alpha', { gpus: { addresses: ['0000:41:00.0'] } }, { creationTimestamp: '2026-03-01T00:00:00Z' }),
      policy('mid', { gpus: { addresses: ['0000:42:00.0'] } }, { creationTimestamp: '2026-01-01T00:00:00Z' }),
      policy('zulu', { priority: 10, gpus: { addresses: ['0000:41:00.0'] } }),
    ];
    const m = mergeNode(ps, node('n1'), nodeState('n1', [gpu(0), gpu(1)]));
    expect(m.matchedPolicies).toEqual(['alpha', 'mid', 'zulu']);
    // The walk itself went zulu, mid, alpha: zulu wins 41:00.0 and alpha loses it.
    expect(m.spec.gpus).toEqual([
      { address: '0000:41:00.0', policy: 'zulu', allowBootGpu: false },
      { address: '0000:42:00.0', policy: 'mid', allowBootGpu: false },
    ]);
    expect(m.conflicts).toEqual([{ node: 'n1', address: '0000:41:00.0', policy: 'alpha', winner: 'zulu' }]);
  });
});
