import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KUBEVIRT_MANAGED_ANNOTATION } from '../../../src/api/v1alpha1/index.js';
import { type Cluster, condition, eventually, inventory, startCluster } from './harness.js';

const KUBEVIRT_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'kubevirts.kubevirt.io' },
  spec: {
    group: 'kubevirt.io',
    scope: 'Namespaced',
    names: { plural: 'kubevirts', singular: 'kubevirt', kind: 'KubeVirt', listKind: 'KubeVirtList' },
    versions: [{ name: 'v1', served: true, storage: true, subresources: { status: {} } }],
  },
};
const USER_ENTRY = { pciVendorSelector: '10DE:1EB8', resourceName: 'nvidia.com/TU104GL_Tesla_T4' };

function pciHostDevices(c: Cluster): unknown[] | undefined {
  const kv = c.server.object('kubevirt.io', 'v1', 'kubevirts', 'kubevirt', 'kubevirt') as
    | { spec?: { configuration?: { permittedHostDevices?: { pciHostDevices?: unknown[] } } } }
    | undefined;
  return kv?.spec?.configuration?.permittedHostDevices?.pciHostDevices;
}

describe('operator: KubeVirt registration', () => {
  let c: Cluster;
  beforeEach(async () => {
    c = await startCluster();
    await c.agents.addNode('node-a', {}, inventory(2));
  });
  afterEach(async () => {
    await c.close();
  });

  it('touches no KubeVirt CR without the CRD, registers once it appears, and removes only its own entries', async () => {
    c.startOperator();
    await c.createPolicy('h100', { resourceName: 'example.com/h100' });
    await eventually(() => expect(condition(c.policy('h100'), 'Ready')).toBe('True'));
    expect(c.server.requests({ path: /^\/apis\/kubevirt\.io\// })).toEqual([]);

    c.server.seed('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', KUBEVIRT_CRD);
    c.server.seed('kubevirt.io', 'v1', 'kubevirts', {
      metadata: { name: 'kubevirt', namespace: 'kubevirt' },
      spec: { configuration: { permittedHostDevices: { pciHostDevices: [USER_ENTRY] } } },
    });
    await eventually(() =>
      expect(pciHostDevices(c)).toEqual([USER_ENTRY, { pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100', externalResourceProvider: true }]),
    );
    const kv = c.server.object('kubevirt.io', 'v1', 'kubevirts', 'kubevirt', 'kubevirt');
    expect(JSON.parse(kv?.metadata.annotations?.[KUBEVIRT_MANAGED_ANNOTATION] ?? 'null')).toEqual([
      { pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100' },
    ]);

    await c.deletePolicy('h100');
    await eventually(() => expect(c.policy('h100')).toBeUndefined());
    expect(pciHostDevices(c)).toEqual([USER_ENTRY]);
    expect(c.server.object('kubevirt.io', 'v1', 'kubevirts', 'kubevirt', 'kubevirt')?.metadata.annotations?.[KUBEVIRT_MANAGED_ANNOTATION]).toBe('[]');
  });

  it('registers the agent-reported default resource name, and not at all when the policy opts out', async () => {
    c.server.seed('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', KUBEVIRT_CRD);
    c.server.seed('kubevirt.io', 'v1', 'kubevirts', { metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: {} });
    c.startOperator();
    await c.createPolicy('quiet', { kubevirt: { register: false } });
    await eventually(() => expect(condition(c.policy('quiet'), 'Ready')).toBe('True'));
    await new Promise((r) => setTimeout(r, 200));
    expect(pciHostDevices(c)).toBeUndefined();

    await c.updatePolicySpec('quiet', {});
    await eventually(() =>
      expect(pciHostDevices(c)).toEqual([{ pciVendorSelector: '10DE:2331', resourceName: 'handoff.dev/10de-2331', externalResourceProvider: true }]),
    );
  });

  it('reports a Conflict condition and a Warning Event when the KubeVirt CR permits our resource without externalResourceProvider', async () => {
    // The form KubeVirt's docs show: virt-handler would start its own plugin for the same resource and
    // kubelet's registration would flap between the two.
    const docsEntry = { pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100' };
    c.server.seed('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', KUBEVIRT_CRD);
    c.server.seed('kubevirt.io', 'v1', 'kubevirts', {
      metadata: { name: 'kubevirt', namespace: 'kubevirt' },
      spec: { configuration: { permittedHostDevices: { pciHostDevices: [docsEntry] } } },
    });
    c.startOperator();
    await c.createPolicy('h100', { resourceName: 'example.com/h100' });
    await eventually(() => expect(c.policy('h100')?.status?.conditions?.find((x) => x.type === 'Conflict')).toMatchObject({ status: 'True', reason: 'KubeVirtServesResource' }));
    expect(c.policy('h100')?.status?.conditions?.find((x) => x.type === 'Conflict')?.message).toMatch(/externalResourceProvider: true/);
    await eventually(() => expect(c.events().filter((e) => e.reason === 'Conflict' && e.name === 'h100' && /KubeVirt CR kubevirt permits/.test(e.message))).toHaveLength(1));
    // Not adopted, not duplicated: the user's entry is theirs to fix.
    expect(pciHostDevices(c)).toEqual([docsEntry]);

    // Fixed by the user → the condition clears.
    const kv = c.server.object('kubevirt.io', 'v1', 'kubevirts', 'kubevirt', 'kubevirt')!;
    c.server.seed('kubevirt.io', 'v1', 'kubevirts', { ...kv, spec: { configuration: { permittedHostDevices: { pciHostDevices: [{ ...docsEntry, externalResourceProvider: true }] } } } });
    await eventually(() => expect(condition(c.policy('h100'), 'Conflict')).toBe('False'));
  });
});
