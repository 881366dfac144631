import { describe, expect, it } from 'vitest';
import type { LabelSelector } from '../api/v1alpha1/index.js';
import { resolvePolicySpec } from '../api/v1alpha1/index.js';
import { gpu, node, policy } from '../testing/operator-fixtures.js';
import { gpuMatches, matchesLabelSelector, policyMatchesNode, selectGpus } from './select.js';

describe(matchesLabelSelector.name, () => {
  const labels = { pool: 'vm', zone: 'a', 'handoff.dev/gpu': '' };
  it.each<[string, LabelSelector | undefined, boolean]>([
    ['absent selector selects every node', undefined, true],
    ['empty selector selects every node', {}, true],
    ['matchLabels equal', { matchLabels: { pool: 'vm' } }, true],
    ['matchLabels differ', { matchLabels: { pool: 'ci' } }, false],
    ['matchLabels all must hold', { matchLabels: { pool: 'vm', zone: 'b' } }, false],
    ['matchLabels on a missing key', { matchLabels: { rack: '1' } }, false],
    ['matchLabels with an empty value', { matchLabels: { 'handoff.dev/gpu': '' } }, true],
    ['In hit', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a', 'b'] }] }, true],
    ['In miss', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['c'] }] }, false],
    ['In on a missing key', { matchExpressions: [{ key: 'rack', operator: 'In', values: ['1'] }] }, false],
    ['In without values matches nothing', { matchExpressions: [{ key: 'zone', operator: 'In' }] }, false],
    ['NotIn hit', { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, false],
    ['NotIn miss', { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['b'] }] }, true],
    ['NotIn on a missing key matches', { matchExpressions: [{ key: 'rack', operator: 'NotIn', values: ['1'] }] }, true],
    ['NotIn without values matches nothing', { matchExpressions: [{ key: 'rack', operator: 'NotIn' }] }, false],
    ['Exists', { matchExpressions: [{ key: 'handoff.dev/gpu', operator: 'Exists' }] }, true],
    ['Exists on a missing key', { matchExpressions: [{ key: 'rack', operator: 'Exists' }] }, false],
    ['DoesNotExist', { matchExpressions: [{ key: 'rack', operator: 'DoesNotExist' }] }, true],
    ['DoesNotExist on a present key', { matchExpressions: [{ key: 'zone', operator: 'DoesNotExist' }] }, false],
    ['labels and expressions are ANDed', { matchLabels: { pool: 'vm' }, matchExpressions: [{ key: 'zone', operator: 'In', values: ['b'] }] }, false],
    ['unknown operator fails closed', { matchExpressions: [{ key: 'zone', operator: 'Gt' as 'In', values: ['1'] }] }, false],
  ])('%s', (_name, selector, want) => {
    expect(matchesLabelSelector(selector, labels)).toBe(want);
  });

  it('a node without labels matches only selectors that ask for nothing present', () => {
    expect(matchesLabelSelector({ matchExpressions: [{ key: 'a', operator: 'DoesNotExist' }] }, undefined)).toBe(true);
    expect(matchesLabelSelector({ matchLabels: { a: 'b' } }, undefined)).toBe(false);
  });

  it('policyMatchesNode reads the node labels', () => {
    expect(policyMatchesNode(policy('p', { nodeSelector: { matchLabels: { pool: 'vm' } } }), node('n', { pool: 'vm' }))).toBe(true);
    expect(policyMatchesNode(policy('p', { nodeSelector: { matchLabels: { pool: 'vm' } } }), node('n'))).toBe(false);
  });
});

describe(gpuMatches.name, () => {
  const h100 = gpu(0); // 10de:2331, class 0x030200, 0000:41:00.0
  const vga = gpu(1, { vendorId: '1002', deviceId: '744c', class: '0x030000' });
  const accel = gpu(2, { vendorId: '8086', deviceId: '0bd5', class: '0x120000' });
  const sel = (s: Partial<{ vendorDevices: string[]; classes: string[]; addresses: string[] }>) => resolvePolicySpec({ gpus: s }).gpus;
  it.each([
    ['empty selector takes every GPU', sel({}), [true, true, true]],
    ['vendor:device', sel({ vendorDevices: ['10de:2331'] }), [true, false, false]],
    ['vendor:device in upper case with 0x (lenient at runtime)', sel({ vendorDevices: ['0x10DE:0x2331'] }), [true, false, false]],
    ['class without prog-if matches any prog-if', sel({ classes: ['0x0302'] }), [true, false, false]],
    ['VGA class 0x0300', sel({ classes: ['0x0300'] }), [false, true, false]],
    ['class with prog-if matches exactly', sel({ classes: ['0x030000'] }), [false, true, false]],
    ['class with another prog-if', sel({ classes: ['0x030001'] }), [false, false, false]],
    ['accelerator class', sel({ classes: ['0x1200'] }), [false, false, true]],
    ['address', sel({ addresses: ['0000:42:00.0'] }), [false, true, false]],
    ['address in upper case (normalised)', sel({ addresses: ['0000:43:00.0'.toUpperCase()] }), [false, false, true]],
    ['selectors are any-of', sel({ vendorDevices: ['10de:2331'], addresses: ['0000:43:00.0'] }), [true, false, true]],
    ['malformed entries select nothing', sel({ vendorDevices: ['nvidia'], classes: ['VGA'], addresses: ['41:00.0'] }), [false, false, false]],
  ])('%s', (_name, s, want) => {
    expect([h100, vga, accel].map((g) => gpuMatches(s, g))).toEqual(want);
  });
});

describe(selectGpus.name, () => {
  const boot = gpu(0, { bootGpu: true, class: '0x030000' });
  const other = gpu(1);
  it('keeps the boot GPU on the host unless allowBootGpu, and reports it', () => {
    const res = selectGpus(resolvePolicySpec({}), [boot, other]);
    expect(res.selected).toEqual([other]);
    expect(res.skippedBootGpus).toEqual([boot]);
  });
  it('takes the boot GPU with allowBootGpu', () => {
    const res = selectGpus(resolvePolicySpec({ allowBootGpu: true, gpus: { addresses: [boot.address] } }), [boot, other]);
    expect(res.selected).toEqual([boot]);
    expect(res.skippedBootGpus).toEqual([]);
  });
  it('an address selector does not bypass the boot-GPU rule', () => {
    const res = selectGpus(resolvePolicySpec({ gpus: { addresses: [boot.address] } }), [boot, other]);
    expect(res.selected).toEqual([]);
    expect(res.skippedBootGpus).toEqual([boot]);
  });
  it('a boot GPU the selectors do not match is not reported as skipped', () => {
    const res = selectGpus(resolvePolicySpec({ gpus: { addresses: [other.address] } }), [boot, other]);
    expect(res).toEqual({ selected: [other], skippedBootGpus: [] });
  });
});
