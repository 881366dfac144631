import { describe, expect, it } from 'vitest';
import { snapshot, twoGpuHost } from '../../test/support/deviceplugin-snapshots.js';
import type { HostSnapshot } from '../host/model.js';
import { computeDeviceSets, diffDeviceSets, envVarClashes, notReadyReason, toWireDevice } from './devices.js';

const R = 'nvidia.com/GA102';
const byResource = (): string => R;

function withFn(s: HostSnapshot, address: string, patch: Partial<{ driver: string | undefined }>): HostSnapshot {
  return { ...s, functions: s.functions.map((f) => (f.address === address ? { ...f, ...patch } : f)), gpus: s.gpus.map((g) => (g.fn.address === address ? { ...g, fn: { ...g.fn, ...patch } } : g)) };
}

describe(notReadyReason.name, () => {
  const host = twoGpuHost();
  const gpu = host.gpus[0]!;

  it('is ready when the group is on vfio-pci and /dev/vfio/<group> exists', () => {
    expect(notReadyReason(host, gpu)).toBeUndefined();
  });
  it.each([
    ['GPU on nvidia', withFn(host, '0000:01:00.0', { driver: 'nvidia' }), 'NOT_ON_VFIO_PCI'],
    ['audio sibling on snd_hda_intel', withFn(host, '0000:01:00.1', { driver: 'snd_hda_intel' }), 'GROUP_NOT_VIABLE'],
    ['audio sibling unbound', withFn(host, '0000:01:00.1', { driver: undefined }), undefined],
    ['audio sibling on pci-stub', withFn(host, '0000:01:00.1', { driver: 'pci-stub' }), undefined],
    ['no /dev/vfio/12', { ...host, vfioGroupNodes: [30] }, 'NO_VFIO_GROUP_NODE'],
    ['IOMMU off', { ...host, iommuEnabled: false }, 'NO_IOMMU_GROUP'],
  ])('%s → %s', (_name, s, reason) => {
    expect(notReadyReason(s, s.gpus.find((g) => g.fn.address === gpu.fn.address)!)).toBe(reason);
  });

  it('ignores bridges in the group but not unknown members', () => {
    const bridged = snapshot([
      { address: '0000:00:01.0', group: 1, isBridge: true, driver: 'pcieport', classCode: 0x060400 },
      { address: '0000:01:00.0', group: 1, gpu: {} },
    ]);
    expect(notReadyReason(bridged, bridged.gpus[0]!)).toBeUndefined();
    const ghost = { ...bridged, groups: [{ id: 1, members: [...bridged.groups[0]!.members, '0000:01:00.5'] }] } as unknown as HostSnapshot;
    expect(notReadyReason(ghost, ghost.gpus[0]!)).toBe('GROUP_NOT_VIABLE');
  });
});

describe(computeDeviceSets.name, () => {
  it('advertises ready GPUs only (never audio siblings), with NUMA topology', () => {
    const sets = computeDeviceSets(twoGpuHost(), byResource);
    expect([...sets.keys()]).toEqual([R]);
    expect(sets.get(R)!.map(toWireDevice)).toEqual([
      { ID: '0000:01:00.0', health: 'Healthy', topology: { nodes: [{ ID: 0 }] } },
      { ID: '0000:41:00.0', health: 'Healthy', topology: { nodes: [{ ID: 1 }] } },
    ]);
  });

  it('omits topology when the NUMA node is unknown', () => {
    const s = snapshot([{ address: '0000:01:00.0', group: 3, gpu: {} }]);
    expect(toWireDevice(computeDeviceSets(s, byResource).get(R)![0]!)).toEqual({ ID: '0000:01:00.0', health: 'Healthy' });
  });

  it('never advertises a GPU that was not ready before', () => {
    const s = withFn(twoGpuHost(), '0000:01:00.0', { driver: 'nvidia' });
    expect(computeDeviceSets(s, byResource).get(R)!.map((d) => d.id)).toEqual(['0000:41:00.0']);
  });

  it('keeps a previously advertised GPU as Unhealthy under its old resource, and back to Healthy', () => {
    const first = computeDeviceSets(twoGpuHost(), byResource);
    const broken = withFn(twoGpuHost(), '0000:01:00.1', { driver: 'snd_hda_intel' });
    const second = computeDeviceSets(broken, (g) => (g.fn.address === '0000:01:00.0' ? 'other.io/renamed' : R), first);
    expect(second.get(R)!.map((d) => [d.id, d.health, d.reason])).toEqual([
      ['0000:01:00.0', 'Unhealthy', 'GROUP_NOT_VIABLE'],
      ['0000:41:00.0', 'Healthy', undefined],
    ]);
    expect(second.has('other.io/renamed')).toBe(false);
    const third = computeDeviceSets(twoGpuHost(), byResource, second);
    expect(third.get(R)!.every((d) => d.health === 'Healthy')).toBe(true);
  });

  it('moves a ready GPU to its new resource when the cluster renames it', () => {
    const first = computeDeviceSets(twoGpuHost(), byResource);
    const renamed = computeDeviceSets(twoGpuHost(), (g) => (g.fn.address === '0000:41:00.0' ? 'example.com/h100' : R), first);
    expect(renamed.get(R)!.map((d) => d.id)).toEqual(['0000:01:00.0']);
    expect(renamed.get('example.com/h100')!.map((d) => [d.id, d.health])).toEqual([['0000:41:00.0', 'Healthy']]);
  });

  it('drops a GPU that left the host, and adds a new one', () => {
    const first = computeDeviceSets(twoGpuHost(), byResource);
    const removed = snapshot([
      { address: '0000:41:00.0', group: 30, numa: 1, gpu: {} },
      { address: '0000:81:00.0', group: 40, gpu: {} },
    ]);
    expect(computeDeviceSets(removed, byResource, first).get(R)!.map((d) => d.id)).toEqual(['0000:41:00.0', '0000:81:00.0']);
  });

  it('splits resources by name and skips GPUs without one', () => {
    const sets = computeDeviceSets(twoGpuHost(), (g) => (g.fn.address.startsWith('0000:01') ? 'a.io/x' : undefined));
    expect([...sets.keys()]).toEqual(['a.io/x']);
  });
});

describe(diffDeviceSets.name, () => {
  it('reports only real changes', () => {
    const a = computeDeviceSets(twoGpuHost(), byResource);
    const same = computeDeviceSets(twoGpuHost(), byResource, a);
    expect(diffDeviceSets(a, same)).toEqual({ added: [], removed: [], changed: [] });
    const unhealthy = computeDeviceSets({ ...twoGpuHost(), vfioGroupNodes: [12] }, byResource, a);
    expect(diffDeviceSets(a, unhealthy)).toEqual({ added: [], removed: [], changed: [R] });
    expect(diffDeviceSets(new Map(), a)).toEqual({ added: [R], removed: [], changed: [] });
    expect(diffDeviceSets(a, new Map())).toEqual({ added: [], removed: [R], changed: [] });
  });
});

describe(envVarClashes.name, () => {
  it('serves one resource per PCI_RESOURCE_* variable: the one kubelet already has, else the first by name', () => {
    expect(envVarClashes(['example.com/gpu.a', 'example.com/GPU_A', 'example.com/gpu-a'], new Set())).toEqual(new Map([['example.com/gpu.a', 'example.com/GPU_A']]));
    expect(envVarClashes(['example.com/gpu.a', 'example.com/GPU_A'], new Set(['example.com/gpu.a']))).toEqual(new Map([['example.com/GPU_A', 'example.com/gpu.a']]));
    expect(envVarClashes(['nvidia.com/A', 'nvidia.com/B'], new Set())).toEqual(new Map());
  });
});

describe('device sets: readiness details, order and change detection', () => {
  it('a GPU without an IOMMU group is not ready even with the IOMMU on', () => {
    const s = snapshot([{ address: '0000:01:00.0', group: undefined, gpu: {} }]);
    expect(notReadyReason(s, s.gpus[0]!)).toBe('NO_IOMMU_GROUP');
  });

  it('judges the GPU by its own group, not the first group of the host', () => {
    const s = snapshot([
      { address: '0000:01:00.0', group: 3, gpu: {} },
      { address: '0000:41:00.0', group: 9, gpu: {} },
    ]);
    const ghost = { ...s, groups: [s.groups[0]!, { id: 9, members: ['0000:41:00.0', '0000:41:00.7'] }] } as unknown as HostSnapshot;
    expect(notReadyReason(ghost, ghost.gpus[0]!)).toBeUndefined();
    expect(notReadyReason(ghost, ghost.gpus[1]!)).toBe('GROUP_NOT_VIABLE');
  });

  it('skips a ready GPU that no resource names and that was never advertised', () => {
    expect(computeDeviceSets(twoGpuHost(), () => undefined).size).toBe(0);
  });

  it('lists each resource\u2019s devices in address order, whatever order the snapshot has', () => {
    const s = twoGpuHost();
    const reversed = { ...s, gpus: [...s.gpus].reverse() };
    expect(computeDeviceSets(reversed, byResource).get(R)!.map((d) => d.id)).toEqual(['0000:01:00.0', '0000:41:00.0']);
  });

  it('a GPU that was advertised keeps its resource while not ready, even if nothing names it any more', () => {
    const s = twoGpuHost();
    const before = computeDeviceSets(s, byResource);
    const down = withFn(s, '0000:41:00.0', { driver: 'nvidia' });
    const sets = computeDeviceSets(down, () => undefined, before);
    expect(sets.get(R)).toEqual([
      expect.objectContaining({ id: '0000:01:00.0', health: 'Healthy', reason: undefined }),
      expect.objectContaining({ id: '0000:41:00.0', health: 'Unhealthy', reason: 'NOT_ON_VFIO_PCI' }),
    ]);
    // Ready again but no longer named: it stays under the resource kubelet knows.
    expect(computeDeviceSets(s, () => undefined, before).get(R)!.map((d) => [d.id, d.health])).toEqual([
      ['0000:01:00.0', 'Healthy'],
      ['0000:41:00.0', 'Healthy'],
    ]);
  });

  it('diff: only real changes (ids, health, NUMA) are changes; every list sorted', () => {
    const dev = (id: string, health = 'Healthy', numaNode: number | undefined = 0) => ({ id, resource: 'r', health, group: 1, numaNode, reason: undefined });
    const prev = new Map([
      ['b.io/x', [dev('0000:01:00.0')]],
      ['a.io/x', [dev('0000:01:00.0')]],
      ['z.io/gone', [dev('0000:09:00.0')]],
      ['y.io/gone', [dev('0000:08:00.0')]],
    ]) as unknown as Parameters<typeof diffDeviceSets>[0];
    const next = new Map([
      ['b.io/x', [dev('0000:01:00.0', 'Unhealthy')]],
      ['a.io/x', [dev('0000:01:00.0', 'Healthy', 1)]],
      ['d.io/new', [dev('0000:02:00.0')]],
      ['c.io/new', [dev('0000:03:00.0')]],
    ]) as unknown as Parameters<typeof diffDeviceSets>[0];
    expect(diffDeviceSets(prev, next)).toEqual({ added: ['c.io/new', 'd.io/new'], removed: ['y.io/gone', 'z.io/gone'], changed: ['a.io/x', 'b.io/x'] });
    const grown = new Map([['a.io/x', [dev('0000:01:00.0'), dev('0000:02:00.0')]]]) as unknown as Parameters<typeof diffDeviceSets>[0];
    const renamed = new Map([['a.io/x', [dev('0000:03:00.0')]]]) as unknown as Parameters<typeof diffDeviceSets>[0];
    const same = new Map([['a.io/x', [dev('0000:01:00.0')]]]) as unknown as Parameters<typeof diffDeviceSets>[0];
    expect(diffDeviceSets(same, grown).changed).toEqual(['a.io/x']);
    expect(diffDeviceSets(same, renamed).changed).toEqual(['a.io/x']);
    expect(diffDeviceSets(same, new Map(same))).toEqual({ added: [], removed: [], changed: [] });
  });
});
