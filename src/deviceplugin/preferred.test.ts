import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { preferredAllocation } from './preferred.js';

const NUMA: Record<string, number | undefined> = {
  '0000:01:00.0': 0,
  '0000:02:00.0': 0,
  '0000:41:00.0': 1,
  '0000:42:00.0': 1,
  '0000:43:00.0': 1,
  '0000:81:00.0': undefined,
  '0001:01:00.0': 1,
};
const numaOf = (id: string): number | undefined => NUMA[id];
const ALL = Object.keys(NUMA);

describe(preferredAllocation.name, () => {
  it('packs onto the NUMA node that fits most tightly', () => {
    expect(preferredAllocation({ available: ALL, mustInclude: [], size: 2 }, numaOf)).toEqual(['0000:01:00.0', '0000:02:00.0']);
    expect(preferredAllocation({ available: ALL, mustInclude: [], size: 3 }, numaOf)).toEqual(['0000:41:00.0', '0000:42:00.0', '0000:43:00.0']);
  });

  it('follows the must-include devices to their node, then the nearest bus', () => {
    expect(preferredAllocation({ available: ALL, mustInclude: ['0000:43:00.0'], size: 2 }, numaOf)).toEqual(['0000:43:00.0', '0000:42:00.0']);
    expect(preferredAllocation({ available: ALL, mustInclude: ['0000:02:00.0'], size: 3 }, numaOf)).toEqual([
      '0000:02:00.0',
      '0000:01:00.0',
      '0000:41:00.0',
    ]);
  });

  it('returns the must-include set when it already fills the request', () => {
    expect(preferredAllocation({ available: ALL, mustInclude: ['0000:41:00.0', '0000:01:00.0'], size: 1 }, numaOf)).toEqual([
      '0000:01:00.0',
      '0000:41:00.0',
    ]);
  });

  it('is deterministic, honours must-include, picks from available only, and never repeats', () => {
    fc.assert(
      fc.property(fc.shuffledSubarray(ALL), fc.nat(8), fc.nat(3), (available, size, mustCount) => {
        const must = available.slice(0, Math.min(mustCount, size));
        const a = preferredAllocation({ available, mustInclude: must, size }, numaOf);
        const b = preferredAllocation({ available: [...available].reverse(), mustInclude: [...must].reverse(), size }, numaOf);
        expect(a).toEqual(b);
        expect(a.length).toBe(Math.min(size, available.length));
        for (const m of must) expect(a).toContain(m);
        for (const id of a) expect(available).toContain(id);
        expect(new Set(a).size).toBe(a.length);
      }),
    );
  });
});
