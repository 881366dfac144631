import { describe, expect, it } from 'vitest';
import type { PciAddress } from '../core/pci-address.js';
import { discoverHost } from '../host/discover.js';
import type { HostSnapshot } from '../host/model.js';
import type { Condition, GpuStatus } from '../api/v1alpha1/index.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { agentGauges, nodeFacts, nodeStatus, readyCondition } from './node-status.js';

const NOW = '2026-11-25T12:00:00.000Z';
const OLD = '2026-01-01T00:00:00.000Z';
const gpu = (address: string, phase: GpuStatus['phase'], resourceName?: string): GpuStatus => ({ address, phase, lastTransitionTime: OLD, ...(resourceName ? { resourceName } : {}) });
const cond = (status: 'True' | 'False'): Condition => ({ type: 'Ready', status, reason: 'x', message: 'x', lastTransitionTime: OLD });

describe(readyCondition.name, () => {
  const cases: { name: string; desired: string[]; gpus: GpuStatus[]; previous?: Condition; generation?: number; want: Condition }[] = [
    {
      name: 'nothing desired: True, AllReady, 0 GPU(s)',
      desired: [],
      gpus: [gpu('a', 'Host')],
      want: { type: 'Ready', status: 'True', reason: 'AllReady', message: '0 GPU(s) ready', lastTransitionTime: NOW },
    },
    {
      name: 'every desired GPU Ready: True; another GPU Failed does not count',
      desired: ['a', 'b'],
      gpus: [gpu('a', 'Ready'), gpu('b', 'Ready'), gpu('c', 'Host')],
      generation: 7,
      want: { type: 'Ready', status: 'True', reason: 'AllReady', message: '2 GPU(s) ready', lastTransitionTime: NOW, observedGeneration: 7 },
    },
    {
      name: 'one desired GPU still Preparing: False, InProgress',
      desired: ['a', 'b'],
      gpus: [gpu('a', 'Ready'), gpu('b', 'Preparing')],
      want: { type: 'Ready', status: 'False', reason: 'InProgress', message: '1 of 2 GPU(s) not ready', lastTransitionTime: NOW },
    },
    {
      name: 'a desired GPU Failed: False, GpuFailed',
      desired: ['a', 'b'],
      gpus: [gpu('a', 'Failed'), gpu('b', 'Preparing')],
      want: { type: 'Ready', status: 'False', reason: 'GpuFailed', message: '2 of 2 GPU(s) not ready', lastTransitionTime: NOW },
    },
    {
      name: 'a desired GPU without any status (not on the node yet): not ready',
      desired: ['a'],
      gpus: [],
      want: { type: 'Ready', status: 'False', reason: 'InProgress', message: '1 of 1 GPU(s) not ready', lastTransitionTime: NOW },
    },
    {
      name: 'status unchanged since the previous condition: its lastTransitionTime stays',
      desired: ['a'],
      gpus: [gpu('a', 'Ready')],
      previous: cond('True'),
      want: { type: 'Ready', status: 'True', reason: 'AllReady', message: '1 GPU(s) ready', lastTransitionTime: OLD },
    },
    {
      name: 'status flipped since the previous condition: lastTransitionTime is now',
      desired: ['a'],
      gpus: [gpu('a', 'Preparing')],
      previous: cond('True'),
      want: { type: 'Ready', status: 'False', reason: 'InProgress', message: '1 of 1 GPU(s) not ready', lastTransitionTime: NOW },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(readyCondition({ desired: c.desired, gpus: c.gpus, previous: c.previous, generation: c.generation, now: NOW })).toStrictEqual(c.want);
    });
  }
});

const snapshotOf = async (profile: string, arrange?: (k: SimulatedKernel) => Promise<void>): Promise<HostSnapshot> => {
  const kernel = new SimulatedKernel(await loadBuiltinProfile(profile));
  await arrange?.(kernel);
  return discoverHost(kernel);
};

describe(nodeFacts.name, () => {
  const cases: { name: string; profile: string; arrange?: (k: SimulatedKernel) => Promise<void>; want: object }[] = [
    {
      name: 'a server without firmware framebuffer, vfio-pci loadable',
      profile: 'server-aspeed-4xh100',
      want: { kernelRelease: '6.8.0-51-generic', iommuEnabled: true, framebuffer: 'none', vfioPci: 'Loadable' },
    },
    {
      name: 'a workstation booted on EFI: the efifb framebuffer, bound',
      profile: 'workstation-efifb',
      want: { framebuffer: 'efi-framebuffer.0 (efifb)' },
    },
    {
      // The claim name comes from /proc/iomem, and efifb's claim goes with its driver.
      name: 'the same with its framebuffer driver unbound',
      profile: 'workstation-efifb',
      arrange: async (k) => k.writeText('sys/bus/platform/drivers/efi-framebuffer/unbind', 'efi-framebuffer.0'),
      want: { framebuffer: 'efi-framebuffer.0 unbound' },
    },
    { name: 'IOMMU off', profile: 'iommu-off', want: { iommuEnabled: false } },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      expect(nodeFacts(await snapshotOf(c.profile, c.arrange))).toMatchObject(c.want);
    });
  }
});

describe(nodeStatus.name, () => {
  it('inventory of every GPU, the statuses as given, the node facts, one Ready condition and the generation', async () => {
    const snapshot = await snapshotOf('server-aspeed-4xh100');
    const gpus = [gpu('0000:18:00.0', 'Ready')];
    const s = nodeStatus({ snapshot, desired: ['0000:18:00.0'], gpus, previousConditions: undefined, generation: 3, now: NOW });
    expect(Object.keys(s)).toEqual(['observedGeneration', 'inventory', 'gpus', 'node', 'conditions']);
    expect(s.observedGeneration).toBe(3);
    expect(s.inventory?.map((g) => `${g.address}${g.bootGpu ? '*' : ''}`)).toEqual(['0000:02:00.0*', '0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0']);
    expect(s.gpus).toEqual(gpus);
    expect(s.node).toEqual({ kernelRelease: '6.8.0-51-generic', iommuEnabled: true, framebuffer: 'none', vfioPci: 'Loadable' });
    expect(s.conditions).toEqual([{ type: 'Ready', status: 'True', reason: 'AllReady', message: '1 GPU(s) ready', lastTransitionTime: NOW, observedGeneration: 3 }]);
  });

  it('without a generation there is no observedGeneration anywhere', async () => {
    const s = nodeStatus({ snapshot: await snapshotOf('server-aspeed-4xh100'), desired: [], gpus: [], previousConditions: undefined, generation: undefined, now: NOW });
    expect('observedGeneration' in s).toBe(false);
    expect('observedGeneration' in s.conditions![0]!).toBe(false);
  });
});

describe(agentGauges.name, () => {
  const record = (framebuffers: { device: string; driver: string }[]) =>
    new Map([[1, { group: 1, gpus: ['0000:01:00.0' as PciAddress], originalDrivers: {}, framebuffers, vtconsoles: [] }]]);
  const cases: { name: string; profile: string; arrange?: (k: SimulatedKernel) => Promise<void>; released?: boolean; want: { framebuffer: string; consolesBound: number } }[] = [
    // The ASPEED's own DRM driver (ast) carries fbcon there; there is no firmware framebuffer.
    { name: 'no framebuffer, none released', profile: 'server-aspeed-4xh100', want: { framebuffer: 'none', consolesBound: 1 } },
    { name: 'efifb bound with fbcon on it', profile: 'workstation-efifb', want: { framebuffer: 'host', consolesBound: 1 } },
    {
      // fbcon had only efifb: it lets go of the console with it.
      name: 'efifb present but unbound: released',
      profile: 'workstation-efifb',
      arrange: async (k) => k.writeText('sys/bus/platform/drivers/efi-framebuffer/unbind', 'efi-framebuffer.0'),
      want: { framebuffer: 'released', consolesBound: 0 },
    },
    { name: 'no framebuffer on the host, but a record says prepare released one', profile: 'server-aspeed-4xh100', released: true, want: { framebuffer: 'released', consolesBound: 1 } },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const snapshot = await snapshotOf(c.profile, c.arrange);
      const g = agentGauges(snapshot, [], c.released ? record([{ device: 'efi-framebuffer.0', driver: 'efi-framebuffer' }]) : record([]));
      expect({ framebuffer: g.framebuffer, consolesBound: g.consolesBound }).toEqual(c.want);
    });
  }

  it('counts GPUs per phase and resource name, unassigned without one', () => {
    const g = agentGauges(
      { framebuffers: [], vtconsoles: [] } as unknown as HostSnapshot,
      [gpu('a', 'Ready', 'x.io/a'), gpu('b', 'Ready', 'x.io/a'), gpu('c', 'Ready'), gpu('d', 'Host'), gpu('e', 'Failed', 'x.io/a')],
      new Map(),
    );
    expect(g.phases).toEqual([
      { phase: 'Ready', resource: 'x.io/a', count: 2 },
      { phase: 'Ready', resource: 'unassigned', count: 1 },
      { phase: 'Host', resource: 'unassigned', count: 1 },
      { phase: 'Failed', resource: 'x.io/a', count: 1 },
    ]);
  });
});
