/**
 * GetPreferredAllocation's tie-breaks, each on a topology where the wrong rule picks other devices:
 * the must-include devices' node on a tie (lowest node id, not the first device's), the smallest node
 * that fits even when it is not the lowest id (keeps the big node free), the lowest node id among nodes
 * that fit equally or, when none fits, among equally big ones; a NUMA match before a nearer bus; the
 * first device on the bus with the most candidates of the same node and domain (the same bus number in
 * another PCI domain is another bus), then the lowest address among equally near buses.
 */
import { describe, expect, it } from 'vitest';
import { preferredAllocation } from './preferred.js';

const pick = (numa: Record<string, number>, mustInclude: string[], size: number): string[] =>
  preferredAllocation({ available: Object.keys(numa), mustInclude, size }, (id) => numa[id]);

describe(`${preferredAllocation.name}: which NUMA node to fill`, () => {
  it('must-include devices split evenly over two nodes: fills from the lower node id, though the lower address is on node 1', () => {
    const numa = { '0000:01:00.0': 1, '0000:02:00.0': 1, '0000:81:00.0': 0, '0000:82:00.0': 0 };
    expect(pick(numa, ['0000:01:00.0', '0000:81:00.0'], 3)).toEqual(['0000:01:00.0', '0000:81:00.0', '0000:82:00.0']);
  });

  it('picks the smallest node that fits, even when a bigger one has the lower id', () => {
    const numa = { '0000:01:00.0': 0, '0000:02:00.0': 0, '0000:03:00.0': 0, '0000:04:00.0': 0, '0000:41:00.0': 1, '0000:42:00.0': 1 };
    expect(pick(numa, [], 2)).toEqual(['0000:41:00.0', '0000:42:00.0']);
  });

  it('between nodes that fit equally tightly: the lower node id, though its devices have the higher addresses', () => {
    const numa = { '0000:01:00.0': 1, '0000:02:00.0': 1, '0000:41:00.0': 0, '0000:42:00.0': 0 };
    expect(pick(numa, [], 2)).toEqual(['0000:41:00.0', '0000:42:00.0']);
  });

  it('when no node fits: starts on the lower of two equally big nodes, then the nearest bus of the other', () => {
    const numa = { '0000:01:00.0': 1, '0000:02:00.0': 1, '0000:41:00.0': 0, '0000:42:00.0': 0 };
    expect(pick(numa, [], 3)).toEqual(['0000:41:00.0', '0000:42:00.0', '0000:02:00.0']);
  });
});

describe(`${preferredAllocation.name}: which device next`, () => {
  it('takes a device of the target node over a nearer bus on another node', () => {
    const numa = { '0000:0a:00.0': 0, '0000:10:00.0': 0, '0000:11:00.0': 1 };
    expect(pick(numa, ['0000:10:00.0'], 2)).toEqual(['0000:10:00.0', '0000:0a:00.0']);
  });

  it('among equally near buses after the first pick: the lowest address, however crowded the other bus is', () => {
    const numa = { '0000:08:00.0': 0, '0000:10:00.0': 0, '0000:18:00.0': 0, '0000:18:01.0': 0 };
    expect(pick(numa, ['0000:10:00.0'], 2)).toEqual(['0000:10:00.0', '0000:08:00.0']);
  });

  it('starts on the most crowded bus, counting a bus per PCI domain (0000:10 and 0001:10 are two buses)', () => {
    const numa = { '0000:10:00.0': 0, '0000:20:00.0': 0, '0000:20:01.0': 0, '0001:10:00.0': 0, '0001:10:01.0': 0 };
    expect(pick(numa, [], 2)).toEqual(['0000:20:00.0', '0000:20:01.0']);
  });
});
