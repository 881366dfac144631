import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { InvalidArgumentError } from '../core/errors.js';
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

describe(`${preferredAllocation.name}: the choice, case by case`, () => {
  const topo: Record<string, number | undefined> = {
    '0000:01:00.0': 0,
    '0000:05:00.0': 0,
    '0000:05:01.0': 0,
    '0000:41:00.0': 1,
    '0000:42:00.0': 1,
    '0000:43:00.0': 1,
    '0000:60:00.0': 1,
    '0000:81:00.0': undefined,
    '0000:82:00.0': undefined,
  };
  const at = (id: string) => topo[id];
  const pick = (available: string[], mustInclude: string[], size: number) => preferredAllocation({ available, mustInclude, size }, at);
  const ids = Object.keys(topo);

  it('refuses a size that is negative or not a whole number', () => {
    expect(() => pick(ids, [], -1)).toThrow(new InvalidArgumentError('allocation size -1 is invalid'));
    expect(() => pick(ids, [], 1.5)).toThrow(new InvalidArgumentError('allocation size 1.5 is invalid'));
    expect(pick(ids, [], 0)).toEqual([]);
  });

  it('fills up on the node where most of the must-include devices are (lowest node on a tie)', () => {
    expect(pick(ids, ['0000:41:00.0', '0000:42:00.0', '0000:01:00.0'], 4)).toEqual(['0000:01:00.0', '0000:41:00.0', '0000:42:00.0', '0000:43:00.0']);
    expect(pick(ids, ['0000:01:00.0', '0000:05:00.0', '0000:41:00.0'], 4)).toEqual(['0000:01:00.0', '0000:05:00.0', '0000:41:00.0', '0000:05:01.0']);
    expect(pick(ids, ['0000:41:00.0', '0000:05:00.0'], 3)).toEqual(['0000:05:00.0', '0000:41:00.0', '0000:05:01.0']);
  });

  it('without must-include: the smallest node that fits, else the biggest; unknown NUMA is a node of its own', () => {
    // Node 0 (3 devices) fits 3 more tightly than node 1 (4).
    expect(pick(ids, [], 3)).toEqual(['0000:05:00.0', '0000:05:01.0', '0000:01:00.0']);
    // Only node 1 fits 4.
    expect(pick(ids, [], 4)).toEqual(['0000:41:00.0', '0000:42:00.0', '0000:43:00.0', '0000:60:00.0']);
    // Nothing fits 5: the biggest node first, then the nearest buses.
    expect(pick(ids, [], 5)).toEqual(['0000:41:00.0', '0000:42:00.0', '0000:43:00.0', '0000:60:00.0', '0000:81:00.0']);
    // Two unknown-NUMA devices fit 2 as tightly as node... they are a bucket of 2, like no real node here: lowest key (-1) wins.
    expect(pick(ids, [], 2)).toEqual(['0000:81:00.0', '0000:82:00.0']);
  });

  it('never treats unknown NUMA as a real node', () => {
    const avail = ['0000:41:00.0', '0000:81:00.0', '0000:01:00.0', '0000:05:00.0'];
    // Node 1 is exhausted by the must-include device: the rest is a NUMA miss either way, nearest bus wins.
    expect(pick(avail, ['0000:41:00.0'], 2)).toEqual(['0000:41:00.0', '0000:05:00.0']);
    expect(preferredAllocation({ available: ['0000:41:00.0', '0000:42:00.0', '0000:81:00.0'], mustInclude: ['0000:81:00.0'], size: 2 }, at)).toEqual([
      '0000:81:00.0',
      '0000:42:00.0',
    ]);
  });

  it('starts on the bus with the most candidates, then stays near the chosen ones', () => {
    expect(pick(['0000:01:00.0', '0000:05:00.0', '0000:05:01.0'], [], 2)).toEqual(['0000:05:00.0', '0000:05:01.0']);
    expect(pick(['0000:41:00.0', '0000:60:00.0', '0000:43:00.0'], ['0000:60:00.0'], 2)).toEqual(['0000:60:00.0', '0000:43:00.0']);
    // Nearest to any chosen device, not to all of them.
    expect(pick(['0000:41:00.0', '0000:42:00.0', '0000:43:00.0', '0000:60:00.0'], ['0000:41:00.0', '0000:60:00.0'], 3)).toEqual([
      '0000:41:00.0',
      '0000:60:00.0',
      '0000:42:00.0',
    ]);
  });

  it('prefers the same PCI domain; ids that are no PCI address come last', () => {
    const numa = (id: string) => (id.startsWith('0001') || id === 'gpu-x' ? 1 : 1);
    expect(preferredAllocation({ available: ['0001:41:00.0', '0000:42:00.0', 'gpu-x'], mustInclude: ['0000:41:00.0'], size: 3 }, numa)).toEqual([
      '0000:41:00.0',
      '0000:42:00.0',
      '0001:41:00.0',
    ]);
  });
});
