import { describe, expect, it } from 'vitest';
import { inventoryEntry, isGpuPassthrough, isKubeVirtCr, isNodeGpuPassthrough, resolvePolicySpec, timeOf } from './api.js';
import type { Gpu } from '../host/model.js';
import { gpu, gpuStatus, nodeState, policy } from './fixtures.js';

describe('guards', () => {
  it.each([
    ['a minimal policy', policy('p'), true],
    ['kind absent (some caches strip it)', { metadata: { name: 'p' }, spec: {} }, true],
    ['wrong kind', { ...policy('p'), kind: 'Pod' }, false],
    ['wrong group', { ...policy('p'), apiVersion: 'v1' }, false],
    ['no spec', { metadata: { name: 'p' } }, false],
    ['no name', { metadata: {}, spec: {} }, false],
    ['selector list of numbers', policy('p', { gpus: { addresses: [1 as unknown as string] } }), false],
    ['priority 1.5', policy('p', { priority: 1.5 }), false],
    ['matchExpressions without key', policy('p', { nodeSelector: { matchExpressions: [{ operator: 'Exists' } as never] } }), false],
    ['null', null, false],
  ])('isGpuPassthrough: %s', (_n, obj, want) => {
    expect(isGpuPassthrough(obj)).toBe(want);
  });
  it.each([
    ['a node state', nodeState('a', [gpu(0)], { gpus: [{ address: gpu(0).address, policy: 'p' }] }, [gpuStatus(gpu(0).address, 'Ready')]), true],
    ['no spec or status yet', { metadata: { name: 'a' } }, true],
    ['unknown phase', nodeState('a', [gpu(0)], {}, [{ ...gpuStatus(gpu(0).address, 'Ready'), phase: 'Bound' as 'Ready' }]), false],
    ['desired GPU without policy', { metadata: { name: 'a' }, spec: { gpus: [{ address: 'x' }] } }, false],
  ])('isNodeGpuPassthrough: %s', (_n, obj, want) => {
    expect(isNodeGpuPassthrough(obj)).toBe(want);
  });
  it('isKubeVirtCr checks the list we rewrite', () => {
    expect(isKubeVirtCr({ metadata: { name: 'kv' } })).toBe(true);
    expect(isKubeVirtCr({ metadata: { name: 'kv' }, spec: { configuration: { permittedHostDevices: { pciHostDevices: [{ resourceName: 'x' }] } } } })).toBe(false);
  });
});

describe(resolvePolicySpec.name, () => {
  it('applies the CRD defaults', () => {
    expect(resolvePolicySpec(undefined)).toEqual({
      nodeSelector: {}, gpus: { vendorDevices: [], classes: [], addresses: [] }, resourceName: '', allowBootGpu: false, paused: false, kubevirtRegister: true, priority: 0,
    });
    expect(resolvePolicySpec({ kubevirt: {}, priority: 3 })).toMatchObject({ kubevirtRegister: true, priority: 3 });
  });
});

describe('helpers', () => {
  it('timeOf reads strings and Dates, undefined for junk', () => {
    expect(timeOf('2026-01-01T00:00:00Z')).toBe(Date.UTC(2026, 0, 1));
    expect(timeOf(new Date(5))).toBe(5);
    expect(timeOf('soon')).toBeUndefined();
    expect(timeOf(undefined)).toBeUndefined();
  });
  it('inventoryEntry maps the discovery model to the status entry', () => {
    const g = { fn: { address: '0000:01:00.0', vendorId: '1002', deviceId: '744c', classCode: 0x30000, iommuGroup: 3, numaNode: undefined }, isBootGpu: true } as unknown as Gpu;
    expect(inventoryEntry(g)).toEqual({ address: '0000:01:00.0', vendorId: '1002', deviceId: '744c', class: '0x030000', bootGpu: true, iommuGroup: 3 });
  });
});
