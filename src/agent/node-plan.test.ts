import { describe, expect, it } from 'vitest';
import { discoverHost } from '../host/discover.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { nodeIntents, planNode, toReason } from './node-plan.js';

const snapshotOf = async (profile: string) => discoverHost(new SimulatedKernel(await loadBuiltinProfile(profile)));
const NOW = '2026-11-25T12:00:00.000Z';

describe(planNode.name, () => {
  it('prepares desired GPUs, split by boot-GPU permission, and leaves others on the host', async () => {
    const snapshot = await snapshotOf('server-aspeed-4xh100');
    const out = planNode({
      snapshot,
      spec: { gpus: [{ address: '0000:18:00.0', policy: 'a' }, { address: '0000:02:00.0', policy: 'b', allowBootGpu: true }] },
      inUse: new Set(),
      records: new Map(),
      previous: undefined,
      now: NOW,
    });
    expect(out.prepare).toEqual({ allowBootGpu: ['0000:02:00.0'], normal: ['0000:18:00.0'] });
    expect(out.release).toEqual([]);
    expect(out.statuses.map((s) => `${s.address}:${s.phase}`)).toEqual([
      '0000:02:00.0:Preparing',
      '0000:18:00.0:Preparing',
      '0000:3b:00.0:Host',
      '0000:9b:00.0:Host',
      '0000:bb:00.0:Host',
    ]);
  });

  it('a paused spec changes nothing: desired GPUs stay on the host with reason Paused', async () => {
    const snapshot = await snapshotOf('server-aspeed-4xh100');
    const out = planNode({ snapshot, spec: { paused: true, gpus: [{ address: '0000:18:00.0', policy: 'a' }] }, inUse: new Set(), records: new Map(), previous: undefined, now: NOW });
    expect(out.prepare).toEqual({ allowBootGpu: [], normal: [] });
    expect(out.statuses.find((s) => s.address === '0000:18:00.0')).toMatchObject({ phase: 'Host', reason: 'Paused' });
  });

  it('keeps lastTransitionTime while the phase holds and moves it when the phase changes', async () => {
    const snapshot = await snapshotOf('server-aspeed-4xh100');
    const previous = [
      { address: '0000:18:00.0', phase: 'Preparing' as const, lastTransitionTime: '2026-01-01T00:00:00.000Z' },
      { address: '0000:3b:00.0', phase: 'Ready' as const, lastTransitionTime: '2026-01-01T00:00:00.000Z' },
    ];
    const out = planNode({ snapshot, spec: { gpus: [{ address: '0000:18:00.0', policy: 'a' }] }, inUse: new Set(), records: new Map(), previous, now: NOW });
    expect(out.statuses.find((s) => s.address === '0000:18:00.0')?.lastTransitionTime).toBe('2026-01-01T00:00:00.000Z');
    expect(out.statuses.find((s) => s.address === '0000:3b:00.0')?.lastTransitionTime).toBe(NOW);
  });

  it('turns error codes into CamelCase reasons', () => {
    expect(toReason('BOOT_GPU_NOT_PERMITTED')).toBe('BootGpuNotPermitted');
    expect(toReason('HOST_WRITE_FAILED')).toBe('HostWriteFailed');
  });
});

describe(`${planNode.name}: every phase and reason`, () => {
  const record = (group: number) => [group, { group, gpus: [], originalDrivers: {}, framebuffers: [], vtconsoles: [] }] as const;
  const base = { inUse: new Set<string>(), records: new Map(), previous: undefined, now: NOW };

  it('a desired GPU already ready: Ready with its resource, group, driver and NUMA node; nothing to do', async () => {
    const snapshot = await snapshotOf('server-aspeed-l40s-vfio');
    const out = planNode({ ...base, snapshot, spec: { gpus: [{ address: '0000:18:00.0', policy: 'p', resourceName: 'nvidia.com/AD102GL_L40S' }] } });
    expect(out.prepare).toEqual({ allowBootGpu: [], normal: [] });
    expect(out.statuses.find((s) => s.address === '0000:18:00.0')).toEqual({
      address: '0000:18:00.0',
      phase: 'Ready',
      lastTransitionTime: NOW,
      resourceName: 'nvidia.com/AD102GL_L40S',
      iommuGroup: 31,
      driver: 'vfio-pci',
      numaNode: 0,
    });
  });

  it('a desired GPU the verdict blocks: Failed with the first reason, every message, not prepared', async () => {
    const snapshot = await snapshotOf('iommu-off');
    const out = planNode({ ...base, snapshot, spec: { gpus: [{ address: '0000:c4:00.0', policy: 'p' }] } });
    expect(out.prepare).toEqual({ allowBootGpu: [], normal: [] });
    const s = out.statuses.find((x) => x.address === '0000:c4:00.0')!;
    expect(s).toMatchObject({ phase: 'Failed', reason: 'IommuOff' });
    expect(s.message).toMatch(/^the IOMMU is off.*; 0000:c4:00\.0 is the boot GPU/);
  });

  it('a failed attempt is reported and retried, but not while paused', async () => {
    const snapshot = await snapshotOf('server-aspeed-4xh100');
    const failures = new Map([['0000:18:00.0', { reason: 'HostWriteFailed', message: 'x'.repeat(2000) }]]);
    const spec = { gpus: [{ address: '0000:18:00.0', policy: 'p', allowBootGpu: true }] };
    const out = planNode({ ...base, snapshot, spec, failures });
    expect(out.prepare).toEqual({ allowBootGpu: ['0000:18:00.0'], normal: [] });
    const s = out.statuses.find((x) => x.address === '0000:18:00.0')!;
    expect(s).toMatchObject({ phase: 'Failed', reason: 'HostWriteFailed' });
    expect(s.message).toHaveLength(1024);
    const paused = planNode({ ...base, snapshot, spec: { ...spec, paused: true }, failures });
    expect(paused.prepare).toEqual({ allowBootGpu: [], normal: [] });
    expect(paused.statuses.find((x) => x.address === '0000:18:00.0')).toMatchObject({ phase: 'Failed', reason: 'HostWriteFailed' });
  });

  it('a GPU no longer desired that we prepared is released, unless a pod holds it or kubelet cannot say', async () => {
    const snapshot = await snapshotOf('server-aspeed-l40s-vfio');
    const records = new Map([record(31), record(45)]);
    const free = planNode({ ...base, snapshot, spec: { gpus: [] }, records });
    expect(free.release).toEqual(['0000:18:00.0', '0000:3b:00.0']);
    expect(free.statuses.find((s) => s.address === '0000:18:00.0')).toMatchObject({ phase: 'Releasing' });
    expect(free.statuses.find((s) => s.address === '0000:18:00.0')!.reason).toBeUndefined();

    const held = planNode({ ...base, snapshot, spec: { gpus: [] }, records, inUse: new Set(['0000:3b:00.0']) });
    expect(held.release).toEqual(['0000:18:00.0']);
    expect(held.statuses.find((s) => s.address === '0000:3b:00.0')).toMatchObject({
      phase: 'Releasing',
      reason: 'InUse',
      message: 'a pod holds 0000:3b:00.0; it is released when the pod ends',
    });

    const unknown = planNode({ ...base, snapshot, spec: { gpus: [] }, records, inUse: undefined });
    expect(unknown.release).toEqual([]);
    expect(unknown.statuses.find((s) => s.address === '0000:18:00.0')).toMatchObject({ phase: 'Releasing', reason: 'InUseUnknown', message: expect.stringContaining('PodResources') });

    const paused = planNode({ ...base, snapshot, spec: { paused: true, gpus: [] }, records });
    expect(paused.release).toEqual([]);
  });

  it('a GPU on vfio-pci that we did not prepare is never touched: Ready (ExternallyBound)', async () => {
    const snapshot = await snapshotOf('server-aspeed-l40s-vfio');
    const out = planNode({ ...base, snapshot, spec: undefined, records: new Map([record(31)]) });
    expect(out.release).toEqual(['0000:18:00.0']);
    expect(out.statuses.find((s) => s.address === '0000:9b:00.0')).toMatchObject({ phase: 'Ready', reason: 'ExternallyBound' });
    expect(out.statuses.find((s) => s.address === '0000:02:00.0')).toMatchObject({ phase: 'Host' });
    expect(out.statuses.find((s) => s.address === '0000:02:00.0')!.reason).toBeUndefined();
  });

  it('lastTransitionTime comes from this GPU\u2019s own previous status, not another one\u2019s', async () => {
    const snapshot = await snapshotOf('server-aspeed-4xh100');
    const OLD = '2026-01-01T00:00:00.000Z';
    const previous = [{ address: '0000:02:00.0', phase: 'Host' as const, lastTransitionTime: OLD }];
    const out = planNode({ ...base, snapshot, spec: undefined, previous });
    expect(out.statuses.find((s) => s.address === '0000:02:00.0')?.lastTransitionTime).toBe(OLD);
    expect(out.statuses.find((s) => s.address === '0000:3b:00.0')?.lastTransitionTime).toBe(NOW);
  });

  it('a group we prepared that is only partly on vfio-pci is released; one someone else bound but not viable is Host', async () => {
    const base4 = await loadBuiltinProfile('workstation-efifb');
    const kernel = new SimulatedKernel(base4);
    kernel.setDriverBinding('0000:01:00.0', 'vfio-pci');
    const snapshot = await discoverHost(kernel);
    const ours = planNode({ ...base, snapshot, spec: { gpus: [] }, records: new Map([record(1)]) });
    expect(ours.release).toEqual(['0000:01:00.0']);
    const theirs = planNode({ ...base, snapshot, spec: { gpus: [] } });
    expect(theirs.release).toEqual([]);
    expect(theirs.statuses.find((s) => s.address === '0000:01:00.0')).toMatchObject({ phase: 'Host', reason: 'ExternallyBound' });
  });

  it('a desired GPU the node does not have: Failed NotFound, listed in address order', async () => {
    const snapshot = await snapshotOf('server-aspeed-4xh100');
    const out = planNode({ ...base, snapshot, spec: { gpus: [{ address: '0000:05:00.0', policy: 'p', resourceName: 'x.io/y' }] } });
    expect(out.statuses.map((s) => s.address)).toEqual(['0000:02:00.0', '0000:05:00.0', '0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0']);
    expect(out.statuses.find((s) => s.address === '0000:05:00.0')).toStrictEqual({
      address: '0000:05:00.0',
      phase: 'Failed',
      reason: 'NotFound',
      message: 'no GPU 0000:05:00.0 on this node',
      resourceName: 'x.io/y',
      lastTransitionTime: NOW,
    });
  });
});

describe('the one "on VFIO" rule in the node plan (src/host/readiness.ts onVfio, as the engine\u2019s release --all)', () => {
  const record = (group: number) => [group, { group, gpus: [], originalDrivers: {}, framebuffers: [], vtconsoles: [] }] as const;
  const base = { inUse: new Set<string>(), previous: undefined, now: NOW, spec: { gpus: [] } };
  // server-aspeed-4xh100: H100 0000:3b:00.0 on nvidia, alone in its IOMMU group.
  const cases: { name: string; arrange: (k: SimulatedKernel) => Promise<void>; ours: boolean; phase: string; reason?: string; release: string[] }[] = [
    { name: 'ours, on nvidia: nothing to give back', arrange: async () => undefined, ours: true, phase: 'Host', release: [] },
    {
      name: 'ours, driver_override vfio-pci but not bound (between override and probe): released',
      arrange: async (k) => k.writeText('sys/bus/pci/devices/0000:3b:00.0/driver_override', 'vfio-pci'),
      ours: true,
      phase: 'Releasing',
      release: ['0000:3b:00.0'],
    },
    {
      // Ready as the device plugin sees it (the same readiness rule); before one rule it was Host without a reason.
      name: 'someone else\u2019s, on a vfio-pci variant driver: never touched, Ready (ExternallyBound)',
      arrange: async (k) => k.setDriverBinding('0000:3b:00.0', 'nvgrace_gpu_vfio_pci'),
      ours: false,
      phase: 'Ready',
      reason: 'ExternallyBound',
      release: [],
    },
    {
      name: 'ours, on a vfio-pci variant driver: released',
      arrange: async (k) => k.setDriverBinding('0000:3b:00.0', 'nvgrace_gpu_vfio_pci'),
      ours: true,
      phase: 'Releasing',
      release: ['0000:3b:00.0'],
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
      await c.arrange(kernel);
      const snapshot = await discoverHost(kernel);
      const group = snapshot.gpus.find((g) => g.fn.address === '0000:3b:00.0')!.fn.iommuGroup!;
      const out = planNode({ ...base, snapshot, records: new Map(c.ours ? [record(group)] : []) });
      expect(out.release).toEqual(c.release);
      const s = out.statuses.find((x) => x.address === '0000:3b:00.0')!;
      expect({ phase: s.phase, reason: s.reason }).toEqual({ phase: c.phase, reason: c.reason });
    });
  }
});

describe(nodeIntents.name, () => {
  const actions = (prepareBoot: string[], normal: string[], release: string[]) =>
    ({ prepare: { allowBootGpu: prepareBoot, normal }, release, statuses: [] }) as unknown as Parameters<typeof nodeIntents>[0];
  const cases: { name: string; actions: Parameters<typeof nodeIntents>[0]; backingOff: string[]; intents: unknown[] }[] = [
    { name: 'nothing to do', actions: actions([], [], []), backingOff: [], intents: [] },
    {
      name: 'boot GPU with permission, another to vfio, one back to the host',
      actions: actions(['0000:02:00.0'], ['0000:9b:00.0'], ['0000:3b:00.0']),
      backingOff: [],
      intents: [
        { address: '0000:02:00.0', want: 'vfio', allowBootGpu: true },
        { address: '0000:9b:00.0', want: 'vfio', allowBootGpu: false },
        { address: '0000:3b:00.0', want: 'host' },
      ],
    },
    {
      name: 'a GPU backing off after a failed prepare is left out; releases never back off',
      actions: actions([], ['0000:9b:00.0', '0000:bb:00.0'], ['0000:3b:00.0']),
      backingOff: ['0000:9b:00.0', '0000:3b:00.0'],
      intents: [
        { address: '0000:bb:00.0', want: 'vfio', allowBootGpu: false },
        { address: '0000:3b:00.0', want: 'host' },
      ],
    },
    {
      name: 'a boot GPU backing off is left out like any other',
      actions: actions(['0000:02:00.0'], ['0000:9b:00.0'], []),
      backingOff: ['0000:02:00.0'],
      intents: [{ address: '0000:9b:00.0', want: 'vfio', allowBootGpu: false }],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(nodeIntents(c.actions, (a) => !c.backingOff.includes(a))).toEqual(c.intents);
    });
  }
});
