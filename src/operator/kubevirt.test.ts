import { describe, expect, it } from 'vitest';
import type { KubeVirtCr, PciHostDevice } from '../api/kubevirt.js';
import { KUBEVIRT_MANAGED_ANNOTATION } from '../api/v1alpha1/index.js';
import { gpu, gpuStatus, nodeState, policy } from '../testing/operator-fixtures.js';
import type { ManagedEntry } from './kubevirt.js';
import { desiredKubeVirtDevices, parseManaged, pciVendorSelector, planKubeVirt } from './kubevirt.js';

function kv(list: PciHostDevice[] | undefined, managed?: ManagedEntry[]): KubeVirtCr {
  const cr: KubeVirtCr = { metadata: { name: 'kubevirt', namespace: 'kubevirt', resourceVersion: '7' }, spec: { configuration: { developerConfiguration: { featureGates: ['HostDevices'] } } } };
  if (list) cr.spec!.configuration!.permittedHostDevices = { pciHostDevices: list, mediatedDevices: [] };
  if (managed) cr.metadata.annotations = { [KUBEVIRT_MANAGED_ANNOTATION]: JSON.stringify(managed), other: 'x' };
  return cr;
}
const user: PciHostDevice = { pciVendorSelector: '10DE:1EB8', resourceName: 'nvidia.com/TU104GL_Tesla_T4', externalResourceProvider: true };
const h100 = { pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100' };
const a6000 = { pciVendorSelector: '10DE:2230', resourceName: 'example.com/a6000' };
const ours = (e: ManagedEntry): PciHostDevice => ({ ...e, externalResourceProvider: true });

describe(planKubeVirt.name, () => {
  it('adds our entries after the user entries and records them in the annotation', () => {
    const c = planKubeVirt(kv([user]), [h100, a6000]);
    expect(c?.pciHostDevices).toEqual([user, ours(a6000), ours(h100)]);
    expect(JSON.parse(c!.annotation)).toEqual([a6000, h100]);
    expect(c?.patch).toEqual({
      metadata: { annotations: { [KUBEVIRT_MANAGED_ANNOTATION]: c!.annotation }, resourceVersion: '7' },
      spec: { configuration: { permittedHostDevices: { pciHostDevices: c!.pciHostDevices } } },
    });
  });

  it('creates the list when KubeVirt has none', () => {
    expect(planKubeVirt(kv(undefined), [h100])?.pciHostDevices).toEqual([ours(h100)]);
  });

  it('returns null when nothing changes (no write)', () => {
    expect(planKubeVirt(kv([user, ours(a6000), ours(h100)], [a6000, h100]), [h100, a6000])).toBeNull();
    expect(planKubeVirt(kv([user]), [])).toBeNull();
    expect(planKubeVirt(kv(undefined), [])).toBeNull();
  });

  it('removes only what we added, keeping the order of everything else', () => {
    const c = planKubeVirt(kv([ours(h100), user, ours(a6000)], [a6000, h100]), [h100]);
    expect(c?.pciHostDevices).toEqual([ours(h100), user]);
    expect(JSON.parse(c!.annotation)).toEqual([h100]);
  });

  it('never touches a user entry, even one equal to ours, and does not adopt it', () => {
    const userH100 = { ...h100, pciVendorSelector: '10de:2331', externalResourceProvider: false };
    const add = planKubeVirt(kv([userH100]), [h100]);
    // Already permitted by the user (selector case differs): nothing to add, nothing managed.
    expect(add).toBeNull();
    const remove = planKubeVirt(kv([userH100]), []);
    expect(remove).toBeNull();
  });

  it('re-adds an entry of ours that someone deleted while it is still wanted', () => {
    expect(planKubeVirt(kv([user], [h100]), [h100])?.pciHostDevices).toEqual([user, ours(h100)]);
  });

  it('writes an empty managed list when our last entry goes', () => {
    const c = planKubeVirt(kv([user, ours(h100)], [h100]), []);
    expect(c?.pciHostDevices).toEqual([user]);
    expect(c?.annotation).toBe('[]');
  });

  it('a garbled annotation counts as "we added nothing": it never deletes on a guess', () => {
    const cr = kv([user, ours(h100)]);
    cr.metadata.annotations = { [KUBEVIRT_MANAGED_ANNOTATION]: '{oops' };
    expect(planKubeVirt(cr, [])).toBeNull();
  });
});

describe(parseManaged.name, () => {
  it.each([
    [undefined, []],
    ['', []],
    ['nope', []],
    ['{"a":1}', []],
    [JSON.stringify([h100, { x: 1 }]), [h100]],
  ])('%s', (raw, want) => {
    expect(parseManaged(raw)).toEqual(want);
  });
});

describe(desiredKubeVirtDevices.name, () => {
  const spec = (policyName: string, resourceName?: string) => ({ gpus: [{ address: gpu(0).address, policy: policyName, ...(resourceName ? { resourceName } : {}) }] });
  it('uses the override, upper-case selectors, and dedupes across nodes', () => {
    const ps = [policy('p', { resourceName: 'example.com/h100' })];
    const states = [nodeState('a', [gpu(0)], spec('p', 'example.com/h100')), nodeState('b', [gpu(0)], spec('p', 'example.com/h100'))];
    expect(desiredKubeVirtDevices(ps, states)).toEqual([h100]);
    expect(pciVendorSelector('10de', '2331')).toBe('10DE:2331');
  });
  it('uses the agent-reported default name, and waits for it', () => {
    const ps = [policy('p')];
    expect(desiredKubeVirtDevices(ps, [nodeState('a', [gpu(0)], spec('p'))])).toEqual([]);
    const reported = nodeState('a', [gpu(0)], spec('p'), [gpuStatus(gpu(0).address, 'Ready', { resourceName: 'vfio-handoff.dev/10de_2331' })]);
    expect(desiredKubeVirtDevices(ps, [reported])).toEqual([{ pciVendorSelector: '10DE:2331', resourceName: 'vfio-handoff.dev/10de_2331' }]);
  });
  it('skips policies with register false or being deleted', () => {
    const states = [nodeState('a', [gpu(0)], spec('p', 'example.com/h100'))];
    expect(desiredKubeVirtDevices([policy('p', { kubevirt: { register: false } })], states)).toEqual([]);
    expect(desiredKubeVirtDevices([policy('p', {}, { deletionTimestamp: '2026-01-01T00:00:00Z' })], states)).toEqual([]);
    expect(desiredKubeVirtDevices([], states)).toEqual([]);
  });
});

describe('KubeVirt permittedHostDevices: order, case and what counts as ours', () => {
  it('selectors are upper-case on both halves', () => {
    expect(pciVendorSelector('1002', '74a1')).toBe('1002:74A1');
    expect(pciVendorSelector('10de', 'abcd')).toBe('10DE:ABCD');
  });

  it('desired entries are sorted by resource, then selector; several GPUs per node, per model', () => {
    const inv = [gpu(0), gpu(1, { deviceId: '2330' }), gpu(2, { deviceId: '26b9' })];
    const st = nodeState('a', inv, {
      gpus: [
        { address: inv[0]!.address, policy: 'p', resourceName: 'example.com/h100' },
        { address: inv[1]!.address, policy: 'p', resourceName: 'example.com/h100' },
        { address: inv[2]!.address, policy: 'p', resourceName: 'example.com/a-l40s' },
      ],
    });
    expect(desiredKubeVirtDevices([policy('p')], [st])).toEqual([
      { pciVendorSelector: '10DE:26B9', resourceName: 'example.com/a-l40s' },
      { pciVendorSelector: '10DE:2330', resourceName: 'example.com/h100' },
      { pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100' },
    ]);
  });

  it('a GPU in the spec but not (yet) in the inventory, or a node without a spec, adds nothing', () => {
    const st = nodeState('a', [gpu(1)], { gpus: [{ address: gpu(0).address, policy: 'p', resourceName: 'example.com/h100' }] });
    expect(desiredKubeVirtDevices([policy('p')], [st, nodeState('b', [gpu(0)], undefined)])).toEqual([]);
    const noStatus = nodeState('c', undefined, { gpus: [{ address: gpu(0).address, policy: 'p', resourceName: 'example.com/h100' }] });
    expect(desiredKubeVirtDevices([policy('p')], [noStatus])).toEqual([]);
  });

  it('our annotation matches entries whatever the case of their selector', () => {
    const lower = { pciVendorSelector: '10de:2331', resourceName: 'example.com/h100' };
    const c = planKubeVirt(kv([user, ours(h100)], [lower]), []);
    expect(c?.pciHostDevices).toEqual([user]);
  });

  it('an annotation listing the same entries in another order is no change; a missing one is written once we manage something', () => {
    expect(planKubeVirt(kv([ours(a6000), ours(h100)], [h100, a6000]), [h100, a6000])).toBeNull();
    const noAnnotation = kv([ours(a6000)]);
    const c = planKubeVirt(noAnnotation, [a6000]);
    // The user's entry equal to ours stays theirs: nothing to manage, so nothing to write.
    expect(c).toBeNull();
    const fresh = planKubeVirt(kv([]), [a6000]);
    expect(fresh?.annotation).toBe(JSON.stringify([a6000]));
  });

  it('the patch carries resourceVersion only when the object has one', () => {
    const cr = kv([]);
    delete cr.metadata.resourceVersion;
    const c = planKubeVirt(cr, [h100]);
    expect(c?.patch.metadata).toEqual({ annotations: { [KUBEVIRT_MANAGED_ANNOTATION]: JSON.stringify([h100]) } });
  });

  it('parseManaged keeps only well-formed entries', () => {
    expect(parseManaged(JSON.stringify([null, 'x', { pciVendorSelector: 1, resourceName: 'r' }, { pciVendorSelector: 'a', resourceName: 2 }, { pciVendorSelector: 'a' }, h100]))).toEqual([h100]);
  });
});
