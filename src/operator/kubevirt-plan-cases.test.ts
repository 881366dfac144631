/**
 * KubeVirt permittedHostDevices plan, cases the main suite leaves open: new entries of one resource
 * appended in selector order whatever order the nodes list them in; a GPU's default resource name taken
 * from that GPU's own status entry (not a neighbour's); node states whose status has no inventory or no
 * per-GPU list yet (valid objects the agent can write); an annotation that lists an entry we no longer
 * manage while the list itself is already right (only the annotation is rewritten); and a patch without
 * a resourceVersion key when the object has none.
 */
import { describe, expect, it } from 'vitest';
import type { KubeVirtCr, PciHostDevice } from '../api/kubevirt.js';
import type { NodeGpuPassthrough } from '../api/v1alpha1/index.js';
import { KUBEVIRT_MANAGED_ANNOTATION, isNodeGpuPassthrough } from '../api/v1alpha1/index.js';
import { gpu, gpuStatus, nodeState, policy } from '../testing/operator-fixtures.js';
import type { ManagedEntry } from './kubevirt.js';
import { desiredKubeVirtDevices, planKubeVirt } from './kubevirt.js';

function kv(list: PciHostDevice[], annotation?: string, resourceVersion?: string): KubeVirtCr {
  const cr: KubeVirtCr = { metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: { configuration: { permittedHostDevices: { pciHostDevices: list } } } };
  if (annotation !== undefined) cr.metadata.annotations = { [KUBEVIRT_MANAGED_ANNOTATION]: annotation };
  if (resourceVersion !== undefined) cr.metadata.resourceVersion = resourceVersion;
  return cr;
}
const ours = (e: ManagedEntry): PciHostDevice => ({ ...e, externalResourceProvider: true });
const user: PciHostDevice = { pciVendorSelector: '10DE:1EB8', resourceName: 'nvidia.com/TU104GL_Tesla_T4', externalResourceProvider: true };
const h100: ManagedEntry = { pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100' };
const h100Pcie: ManagedEntry = { pciVendorSelector: '10DE:2330', resourceName: 'example.com/h100' };
const a6000: ManagedEntry = { pciVendorSelector: '10DE:2230', resourceName: 'example.com/a6000' };

describe('one resource name for several GPU models: ordered by selector', () => {
  it('desiredKubeVirtDevices sorts by selector even when the node already lists them in that order', () => {
    const inv = [gpu(0, { deviceId: '2330' }), gpu(1, { deviceId: '2331' })];
    const st = nodeState('a', inv, {
      gpus: [
        { address: '0000:41:00.0', policy: 'p', resourceName: 'example.com/h100' },
        { address: '0000:42:00.0', policy: 'p', resourceName: 'example.com/h100' },
      ],
    });
    expect(desiredKubeVirtDevices([policy('p')], [st])).toEqual([
      { pciVendorSelector: '10DE:2330', resourceName: 'example.com/h100' },
      { pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100' },
    ]);
  });

  it('planKubeVirt appends them, and records them, in selector order', () => {
    const c = planKubeVirt(kv([user]), [h100Pcie, h100]);
    expect(c?.pciHostDevices).toEqual([
      user,
      { pciVendorSelector: '10DE:2330', resourceName: 'example.com/h100', externalResourceProvider: true },
      { pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100', externalResourceProvider: true },
    ]);
    expect(c?.annotation).toBe(
      '[{"pciVendorSelector":"10DE:2330","resourceName":"example.com/h100"},{"pciVendorSelector":"10DE:2331","resourceName":"example.com/h100"}]',
    );
  });
});

describe("default resource names come from each GPU's own status entry", () => {
  const inv = [gpu(0), gpu(1, { deviceId: '26b9' })];
  const spec = { gpus: [{ address: '0000:41:00.0', policy: 'p' }, { address: '0000:42:00.0', policy: 'p' }] };

  it('two models on one node: each is permitted under the name the agent reported for it', () => {
    const st = nodeState('a', inv, spec, [
      gpuStatus('0000:42:00.0', 'Ready', { resourceName: 'vfio-handoff.dev/10de_26b9' }),
      gpuStatus('0000:41:00.0', 'Ready', { resourceName: 'vfio-handoff.dev/10de_2331' }),
    ]);
    expect(desiredKubeVirtDevices([policy('p')], [st])).toEqual([
      { pciVendorSelector: '10DE:2331', resourceName: 'vfio-handoff.dev/10de_2331' },
      { pciVendorSelector: '10DE:26B9', resourceName: 'vfio-handoff.dev/10de_26b9' },
    ]);
  });

  it('a GPU whose own entry has no name yet waits, even when a neighbour has one', () => {
    const st = nodeState('a', inv, spec, [
      gpuStatus('0000:41:00.0', 'Ready', { resourceName: 'vfio-handoff.dev/10de_2331' }),
      gpuStatus('0000:42:00.0', 'Preparing'),
    ]);
    expect(desiredKubeVirtDevices([policy('p')], [st])).toEqual([{ pciVendorSelector: '10DE:2331', resourceName: 'vfio-handoff.dev/10de_2331' }]);
  });
});

describe('node states with a partial status (valid objects: inventory and gpus are optional)', () => {
  const wantH100 = { address: '0000:41:00.0', policy: 'p', resourceName: 'example.com/h100' };

  it('a status without an inventory adds nothing for that node', () => {
    const noInventory: NodeGpuPassthrough = { ...nodeState('a', undefined, { gpus: [wantH100] }), status: { observedGeneration: 1 } };
    expect(isNodeGpuPassthrough(noInventory)).toBe(true);
    const other = nodeState('b', [gpu(0)], { gpus: [wantH100] });
    expect(desiredKubeVirtDevices([policy('p')], [noInventory, other])).toEqual([{ pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100' }]);
  });

  it('a status with an inventory but no per-GPU list: a default-named GPU waits, an overridden one is permitted', () => {
    const defaultName: NodeGpuPassthrough = {
      ...nodeState('a', undefined, { gpus: [{ address: '0000:41:00.0', policy: 'p' }] }),
      status: { observedGeneration: 1, inventory: [gpu(0, { deviceId: '26b9' })] },
    };
    expect(isNodeGpuPassthrough(defaultName)).toBe(true);
    const overridden: NodeGpuPassthrough = {
      ...nodeState('b', undefined, { gpus: [wantH100] }),
      status: { observedGeneration: 1, inventory: [gpu(0)] },
    };
    expect(desiredKubeVirtDevices([policy('p')], [defaultName, overridden])).toEqual([{ pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100' }]);
  });
});

describe('the annotation is rewritten when only it is stale', () => {
  it('an entry we stopped wanting that someone already removed from the list is dropped from the annotation', () => {
    const cr = kv([user, ours(h100)], JSON.stringify([a6000, h100]), '7');
    const c = planKubeVirt(cr, [h100]);
    expect(c).not.toBeNull();
    expect(c?.pciHostDevices).toEqual([user, { pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100', externalResourceProvider: true }]);
    expect(c?.managed).toEqual([{ pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100' }]);
    expect(c?.patch.metadata).toStrictEqual({
      annotations: { [KUBEVIRT_MANAGED_ANNOTATION]: '[{"pciVendorSelector":"10DE:2331","resourceName":"example.com/h100"}]' },
      resourceVersion: '7',
    });
  });

  it('once rewritten, the same input is no change', () => {
    expect(planKubeVirt(kv([user, ours(h100)], JSON.stringify([h100]), '8'), [h100])).toBeNull();
  });
});

describe('resourceVersion precondition', () => {
  it('an object without resourceVersion gives a patch with no resourceVersion key at all', () => {
    const c = planKubeVirt(kv([]), [h100]);
    expect(c?.patch.metadata).toStrictEqual({
      annotations: { [KUBEVIRT_MANAGED_ANNOTATION]: '[{"pciVendorSelector":"10DE:2331","resourceName":"example.com/h100"}]' },
    });
    expect(Object.keys(c!.patch.metadata)).toEqual(['annotations']);
  });
});
