import { describe, expect, it } from 'vitest';
import { InvalidObjectError, inventoryEntry, isGpuPassthrough, isNodeGpuPassthrough, parseGpuPassthrough, parseNodeGpuPassthrough, resolvePolicySpec, schemaProblems, GPU_PASSTHROUGH, timeOf } from './index.js';
import { isKubeVirtCr } from '../kubevirt.js';
import type { Gpu } from '../../host/model.js';
import { gpu, gpuStatus, nodeState, policy } from '../../testing/operator-fixtures.js';

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
    ['empty spec, no status yet (as the agent creates it)', { metadata: { name: 'a' }, spec: {} }, true],
    ['no spec (the CRD requires one)', { metadata: { name: 'a' } }, false],
    ['inventory class without 0x (CRD pattern)', nodeState('a', [{ ...gpu(0), class: '030000' }], {}, []), false],
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

describe('validators compiled from deploy/crds', () => {
  it('name every problem as path and expectation', () => {
    const bad = { metadata: { name: 'p' }, kind: 'GpuPassthrough', spec: { priority: 1.5, gpus: { addresses: ['41:00.0'] }, nodeSelector: { matchExpressions: [{ operator: 'Bogus' }] } } };
    expect(schemaProblems(GPU_PASSTHROUGH, bad)).toEqual(expect.arrayContaining([
      'spec.priority: must be integer',
      expect.stringMatching(/^spec\.gpus\.addresses\[0\]: must match pattern /),
      'spec.nodeSelector.matchExpressions[0].key: is required',
      'spec.nodeSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist',
    ]));
    expect(schemaProblems(GPU_PASSTHROUGH, { metadata: { name: '' }, apiVersion: 'v1', spec: {} })).toEqual(['metadata.name: must be a non-empty string', 'apiVersion: must be handoff.dev/v1alpha1']);
    expect(schemaProblems(GPU_PASSTHROUGH, [])).toEqual(['(object): must be an object']);
  });
  it('parse* returns the object when it fits and throws InvalidObjectError with the object name otherwise', () => {
    const p = policy('p');
    expect(parseGpuPassthrough(p)).toBe(p);
    const bad = { metadata: { name: 'n1' }, spec: { gpus: [{ address: '0000:41:00.0' }] } };
    expect(() => parseNodeGpuPassthrough(bad)).toThrow(InvalidObjectError);
    expect(() => parseNodeGpuPassthrough(bad)).toThrow('NodeGpuPassthrough n1 does not match its CRD schema: spec.gpus[0].policy: is required');
  });
  it('leave the object as read (no defaulting, no pruning)', () => {
    const p = { metadata: { name: 'p' }, spec: { extra: 1 } };
    expect(isGpuPassthrough(p)).toBe(true);
    expect(p).toEqual({ metadata: { name: 'p' }, spec: { extra: 1 } });
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
