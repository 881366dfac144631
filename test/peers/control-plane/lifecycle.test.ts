/**
 * The operator and the agents as real `vfio-handoff` processes against a real kube-apiserver, each
 * authenticating as its own ServiceAccount with exactly the RBAC (and admission policy) deploy/ ships:
 * the operator with its ServiceAccount token, each agent with a token bound to a pod on its node (what
 * kubelet mounts). Agents run simulated hosts (--profile); kubelet's PodResources is a stand-in here
 * (the real one is in the kubelet peer suite). The scenarios of test/integration/operator, converged.
 */
import type * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FINALIZER, READY_LABEL } from '../../../src/api/v1alpha1/index.js';
import { ControlPlane, controlPlaneBinaries } from '../../support/control-plane.js';
import { KUBEVIRT_CRD_WITHOUT_SCHEMA } from '../../support/kubevirt-crd.js';
import { peerBinary } from '../../support/peers.js';
import { startPodResources } from '../../integration/agent/support.js';
import type { Obj } from './support.js';
import { CLI, Discovery, GPT, H100, NGP, NS, deployToolsMissing, kustomize, processLogs, startCli, until, type CliProcess } from './support.js';

const bins = controlPlaneBinaries();
const skip = bins.skip ?? deployToolsMissing();

interface Condition { type: string; status: string; reason?: string }
interface Policy extends Obj { status?: { conditions?: Condition[]; nodesMatched?: number; nodesReady?: number; gpusReady?: number; gpusFailed?: number; failingNodes?: { node: string }[] } }
interface NodeState extends Obj { spec?: { gpus?: { address: string; policy?: string; resourceName?: string }[] }; status?: { gpus?: { address: string; phase: string; reason?: string }[] } }

type Proc = CliProcess;

/** The agents: two H100 servers (light client and client-node) and a desktop whose GPU group is not viable. */
const AGENTS = [
  { node: 'node-a', profile: 'server-aspeed-4xh100', client: 'light', labels: { gpu: 'yes' } },
  { node: 'node-b', profile: 'server-aspeed-4xh100', client: 'client-node', labels: { gpu: 'yes' } },
  { node: 'node-c', profile: 'foreign-usb-in-group', client: 'light', labels: { gpu: 'desk' } },
] as const;

describe.skipIf(skip)(`operator and agents as their own ServiceAccounts on a real kube-apiserver${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let cp: ControlPlane;
  let dir: string;
  const procs: Proc[] = [];
  const podResources: grpc.Server[] = [];
  const held = new Map<string, string[]>();

  function start(name: string, args: string[], env: Record<string, string> = {}): Proc {
    const p = startCli(CLI, name, args, env);
    procs.push(p);
    return p;
  }
  const logs = (): string => processLogs(procs);

  let operatorKubeconfig: string;
  function startOperatorProcess(name: string): Proc {
    return start(name, ['operator', '--kubeconfig', operatorKubeconfig, '--metrics-addr', '127.0.0.1:0', '--lease-namespace', NS, '--resync', '30', '--log-level', 'info'], { POD_NAME: name });
  }

  const policy = async (name: string): Promise<Policy | undefined> => {
    const r = await cp.request<Policy>('GET', `${GPT}/${name}`);
    return r.status === 200 ? r.body : undefined;
  };
  const cond = (p: Policy | undefined, type: string): string | undefined => p?.status?.conditions?.find((c) => c.type === type)?.status;
  const state = async (node: string): Promise<NodeState> => cp.ok<NodeState>('GET', `${NGP}/${node}`);
  const label = async (node: string): Promise<string | undefined> => (await cp.ok<Obj>('GET', `/api/v1/nodes/${node}`)).metadata.labels?.[READY_LABEL];
  const events = async (): Promise<{ kind: string; name: string; reason: string; type: string }[]> => {
    const list = await cp.ok<{ items: { involvedObject: { kind: string; name: string }; reason: string; type: string }[] }>('GET', '/api/v1/events');
    return list.items.map((e) => ({ kind: e.involvedObject.kind, name: e.involvedObject.name, reason: e.reason, type: e.type }));
  };
  const createPolicy = (name: string, spec: Record<string, unknown>) =>
    cp.ok('POST', GPT, { body: { apiVersion: 'handoff.dev/v1alpha1', kind: 'GpuPassthrough', metadata: { name }, spec } });

  beforeAll(async () => {
    if (skip || bins.skip !== undefined) return;
    if (!existsSync(CLI)) throw new Error('dist/cli/main.js missing: npm test builds first');
    dir = mkdtempSync(join(tmpdir(), 'vh-peers-lifecycle-'));
    cp = await ControlPlane.start(bins);
    const discovery = new Discovery(cp);
    const objects = kustomize('deploy').filter((o) => !o.apiVersion.startsWith('monitoring.coreos.com'));
    for (const o of objects.filter((x) => x.kind === 'Namespace' || x.kind === 'CustomResourceDefinition')) await cp.apply(await discovery.path(o), o);
    for (const o of objects.filter((x) => x.kind === 'CustomResourceDefinition')) await cp.waitEstablished(o.metadata.name);
    for (const o of objects.filter((x) => x.kind !== 'Namespace' && x.kind !== 'CustomResourceDefinition')) {
      const r = await cp.apply(await discovery.path(o), o);
      if (r.status >= 300) throw new Error(`${o.kind}/${o.metadata.name}: ${r.text}`);
    }
    operatorKubeconfig = cp.writeKubeconfig('operator', await cp.serviceAccountToken(NS, 'vfio-handoff-operator'));
    for (const a of AGENTS) {
      await cp.ok('POST', '/api/v1/nodes', { body: { apiVersion: 'v1', kind: 'Node', metadata: { name: a.node, labels: a.labels } } });
      const kubeconfig = cp.writeKubeconfig(a.node, await cp.podBoundToken(NS, 'vfio-handoff-agent', a.node));
      const socket = join(dir, `${a.node}-pod-resources.sock`);
      held.set(a.node, []);
      podResources.push(await startPodResources(socket, () => held.get(a.node) ?? []));
      start(`agent ${a.node}`, [
        'agent', '--profile', a.profile, '--node-name', a.node, '--kubeconfig', kubeconfig, '--kube-client', a.client,
        '--device-plugin', 'off', '--resource-names-file', join(dir, `${a.node}-names.json`), '--pod-resources-socket', socket,
        '--state-dir', join(dir, `${a.node}-state`), '--metrics-addr', '127.0.0.1:0', '--resync-interval', '2s', '--log-level', 'info',
      ]);
    }
    // Each agent creates its own node object, as the ServiceAccount the admission policy restricts.
    for (const a of AGENTS) await until(`${a.node} inventory (${logs()})`, async () => ((await cp.request<NodeState & { status?: { inventory?: unknown[] } }>('GET', `${NGP}/${a.node}`)).body.status?.inventory?.length ?? 0) > 0, 120_000);
    startOperatorProcess('op-1');
    startOperatorProcess('op-2');
  });

  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    for (const s of podResources) s.forceShutdown();
    await cp?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('creates: both H100 nodes get their GPUs, agents answer, labels, Ready, finalizer and Events', async () => {
    await createPolicy('gpus', { nodeSelector: { matchLabels: { gpu: 'yes' } }, gpus: { vendorDevices: ['10de:2331'] }, resourceName: 'example.com/h100' });
    await until(`policy gpus Ready\n${logs()}`, async () => {
      const p = await policy('gpus');
      return cond(p, 'Ready') === 'True' && p?.status?.nodesReady === 2 && p.status.gpusReady === 8;
    }, 120_000);
    const p = await policy('gpus');
    expect(p?.status).toMatchObject({ nodesMatched: 2, nodesReady: 2, gpusReady: 8, gpusFailed: 0 });
    expect(p?.metadata['finalizers']).toContain(FINALIZER);
    for (const n of ['node-a', 'node-b']) {
      expect((await state(n)).spec?.gpus?.map((g) => g.address).sort()).toEqual([...H100]);
      expect(await label(n)).toBe('true');
    }
    expect((await state('node-c')).spec?.gpus ?? []).toEqual([]);
    await until('Events', async () => {
      const ev = await events();
      return ev.some((e) => e.kind === 'Node' && e.name === 'node-a' && e.reason === 'PassthroughReady') && ev.some((e) => e.kind === 'GpuPassthrough' && e.name === 'gpus' && e.reason === 'Ready');
    });
  });

  it('updates: narrowed GPU selector gives the others back to the host', async () => {
    const p = await policy('gpus');
    await cp.ok('PUT', `${GPT}/gpus`, { body: { ...p, spec: { ...(p?.['spec'] as object), gpus: { addresses: [H100[0]] } } } });
    await until(`narrowed\n${logs()}`, async () => {
      const a = await state('node-a');
      const b = await state('node-b');
      const pol = await policy('gpus');
      return (
        a.spec?.gpus?.length === 1 && b.spec?.gpus?.length === 1 && pol?.status?.gpusReady === 2 && cond(pol, 'Ready') === 'True' &&
        a.status?.gpus?.find((g) => g.address === H100[1])?.phase === 'Host'
      );
    }, 120_000);
  });

  it('overlapping policies: the higher priority wins the GPU, the loser reports Conflict', async () => {
    await createPolicy('high', { nodeSelector: { matchLabels: { gpu: 'yes' } }, gpus: { addresses: [H100[0], H100[1]] }, resourceName: 'example.com/h100-hi', priority: 10 });
    await until(`conflict\n${logs()}`, async () => {
      const a = await state('node-a');
      return cond(await policy('gpus'), 'Conflict') === 'True' && cond(await policy('high'), 'Ready') === 'True' &&
        a.spec?.gpus?.find((g) => g.address === H100[0])?.policy === 'high';
    }, 120_000);
    await until('Conflict Event', async () => (await events()).some((e) => e.name === 'gpus' && e.reason === 'Conflict' && e.type === 'Warning'));
    await cp.ok('DELETE', `${GPT}/high`);
    await until('high gone', async () => (await policy('high')) === undefined, 120_000);
  });

  it('an agent failure (GPU group shared with a USB controller) → Degraded, failing node, Warning Events', async () => {
    await createPolicy('desk', { nodeSelector: { matchLabels: { gpu: 'desk' } } });
    await until(`desk Degraded\n${logs()}`, async () => {
      const p = await policy('desk');
      return cond(p, 'Degraded') === 'True' && p?.status?.failingNodes?.some((f) => f.node === 'node-c');
    }, 120_000);
    await until('failure Events', async () => {
      const ev = await events();
      return ev.some((e) => e.kind === 'GpuPassthrough' && e.name === 'desk' && e.reason === 'Degraded' && e.type === 'Warning') &&
        ev.some((e) => e.kind === 'Node' && e.name === 'node-c' && e.type === 'Warning');
    });
    expect(await label('node-c')).not.toBe('true');
    await cp.ok('DELETE', `${GPT}/desk`);
    await until('desk gone', async () => (await policy('desk')) === undefined, 120_000);
  });

  it('leader failover: SIGKILL the leading operator process; the standby takes the Lease and converges a change', async () => {
    const holder = async (): Promise<string | undefined> =>
      (await cp.ok<{ items: { spec: { holderIdentity?: string } }[] }>('GET', `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`)).items[0]?.spec.holderIdentity;
    const leader = await until('a leader', holder);
    const proc = procs.find((p) => p.name === leader.split('_')[0]);
    expect(proc, leader).toBeDefined();
    proc?.child.kill('SIGKILL');
    const next = await until(`new leader\n${logs()}`, async () => {
      const h = await holder();
      return h && h !== leader ? h : undefined;
    }, 120_000);
    expect(next.split('_')[0]).not.toBe(leader.split('_')[0]);
    const p = await policy('gpus');
    await cp.ok('PUT', `${GPT}/gpus`, { body: { ...p, spec: { ...(p?.['spec'] as object), gpus: { addresses: [H100[0], H100[2]] } } } });
    await until(`converged after failover\n${logs()}`, async () => {
      const pol = await policy('gpus');
      return pol?.status?.gpusReady === 4 && cond(pol, 'Ready') === 'True';
    }, 120_000);
    // Restore a standby for the remaining scenarios.
    startOperatorProcess(leader.split('_')[0] === 'op-1' ? 'op-1b' : 'op-2b');
  });

  it('KubeVirt registration: the operator adds its externalResourceProvider entry to the KubeVirt CR', async () => {
    // A v1 CRD without a schema is refused by the real server (the fake one now refuses it the same way).
    const schemaless = KUBEVIRT_CRD_WITHOUT_SCHEMA;
    const refused = await cp.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', { body: schemaless });
    expect(refused.status).toBe(422);
    expect(refused.text).toContain('spec.versions[0].schema.openAPIV3Schema: Required value');
    // So: KubeVirt's own CRD, as virt-operator generates it at the pinned version (test/peers/kubevirt), schema and all.
    const crd = peerBinary('kubevirt', 'kubevirt-crd');
    if (crd.skip !== undefined) throw new Error(`KubeVirt's CRD program is not built: ${crd.skip}`);
    const kubevirtCrd = JSON.parse(execFileSync(crd.path, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 })) as Obj;
    expect(kubevirtCrd.metadata.name).toBe('kubevirts.kubevirt.io');
    await cp.ok('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', { body: kubevirtCrd });
    await cp.waitEstablished('kubevirts.kubevirt.io');
    await cp.ok('POST', '/api/v1/namespaces', { body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kubevirt' } } });
    await cp.ok('POST', '/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts', { body: { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt' }, spec: { configuration: {} } } });
    const p = await policy('gpus');
    await cp.ok('PUT', `${GPT}/gpus`, { body: { ...p, spec: { ...(p?.['spec'] as object), kubevirt: { register: true } } } });
    const entries = await until(`KubeVirt entry\n${logs()}`, async () => {
      const kv = await cp.ok<{ spec?: { configuration?: { permittedHostDevices?: { pciHostDevices?: { resourceName: string; externalResourceProvider?: boolean; pciVendorSelector: string }[] } } } }>('GET', '/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt');
      const e = kv.spec?.configuration?.permittedHostDevices?.pciHostDevices;
      return e && e.length > 0 ? e : undefined;
    }, 120_000);
    expect(entries).toContainEqual(expect.objectContaining({ resourceName: 'example.com/h100', externalResourceProvider: true, pciVendorSelector: '10DE:2331' }));
  });

  it('a GPU a pod holds blocks release: deleting the policy waits (finalizer) until the pod lets go', async () => {
    held.set('node-a', [H100[0]]);
    await cp.ok('DELETE', `${GPT}/gpus`);
    await until(`Releasing/InUse\n${logs()}`, async () => (await state('node-a')).status?.gpus?.find((g) => g.address === H100[0])?.reason === 'InUse', 120_000);
    const waiting = await policy('gpus');
    expect(waiting?.metadata['deletionTimestamp']).toBeDefined();
    expect(waiting?.metadata['finalizers']).toContain(FINALIZER);
    expect((await state('node-a')).status?.gpus?.find((g) => g.address === H100[0])?.phase).toBe('Releasing');
    held.set('node-a', []);
    await until(`policy gone\n${logs()}`, async () => (await policy('gpus')) === undefined, 120_000);
    for (const n of ['node-a', 'node-b']) expect(await label(n)).toBe('false');
    await until('Released Event', async () => (await events()).some((e) => e.name === 'gpus' && e.reason === 'Released'));
  });

  it('nothing was denied to the components: no 401/403 in their logs (the shipped RBAC is enough)', () => {
    const denied = procs.flatMap((p) => p.log.join('').split('\n').filter((l) => /\b(401|403)\b|forbidden|Unauthorized/i.test(l)).map((l) => `${p.name}: ${l.slice(0, 300)}`));
    expect(denied).toEqual([]);
  });
});
