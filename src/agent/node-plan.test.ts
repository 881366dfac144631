import { describe, expect, it } from 'vitest';
import { discoverHost } from '../host/discover.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { planNode, toReason } from './node-plan.js';

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
