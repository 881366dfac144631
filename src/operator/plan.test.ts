import { describe, expect, it } from 'vitest';
import type { GpuPassthrough, NodeGpuPassthrough, NodeLike } from '../api/v1alpha1/index.js';
import type { KubeVirtCr } from '../api/kubevirt.js';
import { FINALIZER, KUBEVIRT_MANAGED_ANNOTATION, READY_LABEL } from '../api/v1alpha1/index.js';
import { decideFinalizer, pendingReleases } from './finalizer.js';
import { gpu, gpuStatus, node, nodeState, policy } from '../testing/operator-fixtures.js';
import { nodeReady, readyLabelChange } from './labels.js';
import type { ClusterView, Write } from './plan.js';
import { reconcileKubeVirt, reconcileNode, reconcilePolicy } from './plan.js';

const NOW = Date.parse('2026-05-01T00:00:00Z');

/** An in-memory cluster that applies the planned writes and plays a perfect agent. */
class SimCluster {
  policies: GpuPassthrough[] = [];
  nodes: NodeLike[] = [];
  states = new Map<string, NodeGpuPassthrough>();
  kubevirt: KubeVirtCr | null | undefined = undefined;
  writesPerNode = new Map<string, number>();
  log: Write[] = [];

  view(): ClusterView {
    return { policies: this.policies, nodes: this.nodes, states: this.states, kubevirt: this.kubevirt, now: NOW };
  }

  private count(nodeName: string): void {
    this.writesPerNode.set(nodeName, (this.writesPerNode.get(nodeName) ?? 0) + 1);
  }

  apply(writes: readonly Write[]): void {
    for (const w of writes) {
      this.log.push(w);
      switch (w.kind) {
        case 'patchNodeSpec': {
          const s = this.states.get(w.node)!;
          s.spec = structuredClone(w.spec);
          s.metadata.generation = (s.metadata.generation ?? 1) + 1;
          this.count(w.node);
          break;
        }
        case 'labelNode': {
          const n = this.nodes.find((x) => x.metadata.name === w.node)!;
          n.metadata.labels = { ...n.metadata.labels, [w.label]: w.value };
          this.count(w.node);
          break;
        }
        case 'event':
          if (w.regarding.kind === 'Node') this.count(w.regarding.name);
          break;
        case 'patchPolicyStatus':
          this.policies.find((p) => p.metadata.name === w.policy)!.status = structuredClone(w.status);
          break;
        case 'addFinalizer':
          this.policies.find((p) => p.metadata.name === w.policy)!.metadata.finalizers = [...w.finalizers];
          break;
        case 'removeFinalizer': {
          const p = this.policies.find((x) => x.metadata.name === w.policy)!;
          p.metadata.finalizers = [...w.finalizers];
          if (p.metadata.deletionTimestamp && w.finalizers.length === 0) this.policies = this.policies.filter((x) => x !== p);
          break;
        }
        case 'updateKubeVirt':
          this.kubevirt!.metadata.annotations = { ...this.kubevirt!.metadata.annotations, ...w.change.patch.metadata.annotations };
          this.kubevirt!.spec = { configuration: { permittedHostDevices: { pciHostDevices: w.change.pciHostDevices } } };
          break;
      }
    }
  }

  /** The agent: desired GPUs become Ready, others go back to Host. */
  agent(): void {
    for (const s of this.states.values()) {
      const want = new Map((s.spec?.gpus ?? []).map((g) => [g.address, g]));
      const statuses = (s.status?.inventory ?? [])
        .map((inv) => {
          const d = want.get(inv.address);
          return d ? gpuStatus(inv.address, 'Ready', { resourceName: d.resourceName || `handoff.dev/${inv.vendorId}_${inv.deviceId}` }) : gpuStatus(inv.address, 'Host');
        });
      s.status = { ...s.status, observedGeneration: s.metadata.generation ?? 1, gpus: statuses };
    }
  }

  /** One controller pass over every key. */
  pass(): number {
    let n = 0;
    for (const nd of [...this.nodes]) {
      const w = reconcileNode(nd.metadata.name, this.view());
      n += w.length;
      this.apply(w);
    }
    for (const p of [...this.policies]) {
      const w = reconcilePolicy(p.metadata.name, this.view());
      n += w.length;
      this.apply(w);
    }
    const k = reconcileKubeVirt(this.view());
    this.apply(k);
    return n + k.length;
  }

  converge(maxPasses = 10): number {
    for (let i = 1; i <= maxPasses; i++) {
      const n = this.pass();
      this.agent();
      if (n === 0) return i;
    }
    throw new Error('did not converge');
  }
}

function cluster(nodes: number, gpusPerNode: number): SimCluster {
  const c = new SimCluster();
  for (let i = 0; i < nodes; i++) {
    const name = `node-${i}`;
    c.nodes.push(node(name, { pool: 'vm' }));
    c.states.set(name, nodeState(name, Array.from({ length: gpusPerNode }, (_, g) => gpu(g)), {}, []));
  }
  c.agent();
  return c;
}

describe('reconcile plan (simulated cluster)', () => {
  it('converges after a policy is created with at most 3 writes per node, then plans nothing', () => {
    const c = cluster(20, 8);
    c.kubevirt = { metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: {} };
    c.policies.push(policy('p', { nodeSelector: { matchLabels: { pool: 'vm' } }, resourceName: 'example.com/h100' }));
    c.converge();
    for (const n of c.nodes) {
      expect(c.writesPerNode.get(n.metadata.name)).toBeLessThanOrEqual(3);
      expect(n.metadata.labels?.[READY_LABEL]).toBe('true');
      expect(c.states.get(n.metadata.name)?.spec?.gpus).toHaveLength(8);
    }
    const p = c.policies[0]!;
    expect(p.metadata.finalizers).toEqual([FINALIZER]);
    expect(p.status).toMatchObject({ nodesMatched: 20, nodesReady: 20, gpusDesired: 160, gpusReady: 160, resources: ['example.com/h100'] });
    expect(c.kubevirt.spec?.configuration?.permittedHostDevices?.pciHostDevices).toEqual([
      { pciVendorSelector: '10DE:2331', resourceName: 'example.com/h100', externalResourceProvider: true },
    ]);
    expect(c.log.filter((w) => w.kind === 'event' && w.regarding.kind === 'GpuPassthrough').map((w) => (w as { reason: string }).reason)).toEqual(['Ready']);
    // Converged: every key plans nothing.
    expect(c.pass()).toBe(0);
  });

  it('delete: releases GPUs, waits for Host, removes the KubeVirt entry, then the finalizer', () => {
    const c = cluster(3, 2);
    c.kubevirt = { metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: {} };
    c.policies.push(policy('p', { resourceName: 'example.com/h100' }));
    c.converge();
    const registered = structuredClone(c.kubevirt);
    expect(registered.spec?.configuration?.permittedHostDevices?.pciHostDevices).toHaveLength(1);
    c.policies[0]!.metadata.deletionTimestamp = '2026-05-02T00:00:00Z';

    // Pass 1: node specs emptied, label false, status Deleting; finalizer held (agents not caught up).
    c.pass();
    expect([...c.states.values()].every((s) => (s.spec?.gpus ?? []).length === 0)).toBe(true);
    expect(c.nodes.every((n) => n.metadata.labels?.[READY_LABEL] === 'false')).toBe(true);
    expect(c.policies).toHaveLength(1);
    expect(decideFinalizer(c.policies[0]!, c.nodes, c.states)).toMatchObject({ kind: 'waitForRelease' });

    c.agent(); // GPUs back on the host
    // The KubeVirt key already dropped the entry in pass 1; put it back to show the policy key's own order:
    // KubeVirt clean-up strictly before the finalizer goes.
    expect(c.kubevirt.spec?.configuration?.permittedHostDevices?.pciHostDevices).toEqual([]);
    c.kubevirt = registered;
    const w = reconcilePolicy('p', c.view());
    expect(w.map((x) => x.kind)).toEqual(['updateKubeVirt']);
    c.apply(w);
    expect(c.kubevirt.spec?.configuration?.permittedHostDevices?.pciHostDevices).toEqual([]);
    const w2 = reconcilePolicy('p', c.view());
    expect(w2.map((x) => x.kind)).toEqual(['removeFinalizer', 'event']);
    c.apply(w2);
    expect(c.policies).toHaveLength(0);
  });

  it('an agent failure gives Degraded plus Warning events on the policy and the node, once', () => {
    const c = cluster(2, 1);
    c.policies.push(policy('p'));
    c.converge();
    c.states.get('node-1')!.status!.gpus = [gpuStatus(gpu(0).address, 'Failed', { reason: 'GroupNotViable', message: 'busy' })];
    const w = c.pass();
    expect(w).toBeGreaterThan(0);
    const warnings = c.log.filter((x) => x.kind === 'event' && x.type === 'Warning').map((x) => x.kind === 'event' && `${x.regarding.kind}/${x.regarding.name}/${x.reason}`);
    expect(warnings).toEqual(expect.arrayContaining(['Node/node-1/PassthroughNotReady', 'GpuPassthrough/p/Degraded', 'Node/node-1/GpuPassthroughFailed']));
    const before = c.log.length;
    expect(c.pass()).toBe(0); // persistent failure: no repeated writes or events
    expect(c.log.length).toBe(before);
  });

  it('overlapping policies: the loser reports Conflict and gets no GPUs', () => {
    const c = cluster(2, 2);
    c.policies.push(policy('a', { priority: 1 }), policy('b'));
    c.converge();
    expect(c.policies.find((p) => p.metadata.name === 'b')?.status?.conditions?.find((x) => x.type === 'Conflict')?.status).toBe('True');
    expect([...c.states.values()].flatMap((s) => s.spec?.gpus ?? []).every((g) => g.policy === 'a')).toBe(true);
  });

  it('reconcileNode plans nothing for a node without its NodeGpuPassthrough, or an unknown node', () => {
    const c = cluster(1, 1);
    c.policies.push(policy('p'));
    c.nodes.push(node('fresh'));
    expect(reconcileNode('fresh', c.view())).toEqual([]);
    expect(reconcileNode('ghost', c.view())).toEqual([]);
    expect(reconcilePolicy('ghost', c.view())).toEqual([]);
  });

  it('no KubeVirt CRD or no CR: nothing to write', () => {
    const c = cluster(1, 1);
    c.policies.push(policy('p', { resourceName: 'example.com/x' }));
    c.converge();
    expect(reconcileKubeVirt({ ...c.view(), kubevirt: undefined })).toEqual([]);
    expect(reconcileKubeVirt({ ...c.view(), kubevirt: null })).toEqual([]);
    const cr: KubeVirtCr = { metadata: { name: 'kv', namespace: 'kubevirt', annotations: { [KUBEVIRT_MANAGED_ANNOTATION]: '[]' } } };
    expect(reconcileKubeVirt({ ...c.view(), kubevirt: cr })).toHaveLength(1);
  });
});

describe('labels', () => {
  const spec = { gpus: [{ address: gpu(0).address, policy: 'p' }, { address: gpu(1).address, policy: 'p' }] };
  it.each([
    ['every desired GPU Ready', spec, ['Ready', 'Ready'], true],
    ['one still preparing', spec, ['Ready', 'Preparing'], false],
    ['no desired GPU', {}, ['Host', 'Host'], false],
  ])('nodeReady: %s', (_n, s, phases, want) => {
    const st = nodeState('a', [gpu(0), gpu(1)], s, phases.map((ph, i) => gpuStatus(gpu(i).address, ph as 'Ready')));
    expect(nodeReady(st)).toBe(want);
  });
  it.each([
    ['absent label, not ready: no write', undefined, false, null],
    ['absent label, ready', undefined, true, 'true'],
    ['true, still ready', 'true', true, null],
    ['true, no longer ready', 'true', false, 'false'],
    ['false, ready', 'false', true, 'true'],
  ])('readyLabelChange: %s', (_n, have, ready, want) => {
    const n = node('a', have === undefined ? {} : { [READY_LABEL]: have });
    const st = nodeState('a', [gpu(0)], { gpus: [{ address: gpu(0).address, policy: 'p' }] }, [gpuStatus(gpu(0).address, ready ? 'Ready' : 'Preparing')]);
    expect(readyLabelChange(n, st)).toBe(want);
  });
});

describe('finalizer', () => {
  const dying = (meta = {}) => policy('p', {}, { deletionTimestamp: '2026-05-02T00:00:00Z', finalizers: [FINALIZER], ...meta });
  it('adds the finalizer to a live policy that lacks it, and leaves others alone', () => {
    expect(decideFinalizer(policy('p'), [], new Map())).toEqual({ kind: 'addFinalizer' });
    expect(decideFinalizer(policy('p', {}, { finalizers: [FINALIZER] }), [], new Map())).toEqual({ kind: 'none' });
    expect(decideFinalizer(dying({ finalizers: ['other'] }), [], new Map())).toEqual({ kind: 'none' });
  });
  it.each([
    ['still in a node spec', { gpus: [{ address: gpu(0).address, policy: 'p' }] }, [gpuStatus(gpu(0).address, 'Ready')], 1, 'InSpec'],
    ['agent has not acted on the new spec', {}, [gpuStatus(gpu(0).address, 'Ready')], 2, 'AgentBehind'],
    ['held by a pod', {}, [gpuStatus(gpu(0).address, 'Releasing', { reason: 'InUse' })], 1, 'Releasing'],
    ['release failed: keep waiting', {}, [gpuStatus(gpu(0).address, 'Failed', { reason: 'UnbindTimeout' })], 1, 'Failed'],
  ])('waits while a GPU is %s', (_n, spec, statuses, generation, state) => {
    const st = nodeState('a', [gpu(0)], spec, statuses, { generation });
    st.status!.observedGeneration = 1;
    const d = decideFinalizer(dying(), [node('a')], new Map([['a', st]]));
    expect(d).toMatchObject({ kind: 'waitForRelease', pending: [{ node: 'a', address: gpu(0).address, state }] });
  });
  it.each([
    ['back in Host', [gpuStatus(gpu(0).address, 'Host')], new Map<string, NodeGpuPassthrough>()],
    ['no status entry any more', [], undefined],
  ])('removes the finalizer once every GPU is %s', (_n, statuses, override) => {
    const states = override ?? new Map([['a', nodeState('a', [gpu(0)], {}, statuses)]]);
    expect(decideFinalizer(dying(), [node('a')], states)).toEqual({ kind: 'removeFinalizer' });
  });
  it('a gone node holds nothing up, and a GPU handed to another policy is not waited for', () => {
    const gone = new Map([['gone', nodeState('gone', [gpu(0)], { gpus: [{ address: gpu(0).address, policy: 'p' }] })]]);
    expect(pendingReleases(dying(), [], gone)).toEqual([]);
    const handed = new Map([['a', nodeState('a', [gpu(0)], { gpus: [{ address: gpu(0).address, policy: 'q' }] }, [gpuStatus(gpu(0).address, 'Ready')])]]);
    expect(pendingReleases(dying(), [node('a')], handed)).toEqual([]);
  });
});
