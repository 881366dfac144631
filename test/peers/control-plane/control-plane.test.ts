/**
 * The shipped manifests, the CRDs' CEL rules and the least-privilege promises, judged by a real
 * kube-apiserver (k8s.io/kubernetes v1.34.4 + etcd, test/peers/kube) with RBAC, ServiceAccount tokens
 * and ValidatingAdmissionPolicy on — not by our own validators.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ControlPlane, controlPlaneBinaries } from '../../support/control-plane.js';
import type { Obj } from './support.js';
import { Discovery, PROMETHEUS_OPERATOR, REPO_ROOT, deployToolsMissing, helmTemplate, kustomize, prometheusOperatorCrds } from './support.js';

const bins = controlPlaneBinaries();
const toolsMissing = bins.skip === undefined ? deployToolsMissing() : undefined;
const skip = bins.skip ?? toolsMissing;
const NS = 'vfio-handoff';
const AGENT = `system:serviceaccount:${NS}:vfio-handoff-agent`;

let cp: ControlPlane;
let discovery: Discovery;

/** Applies objects server-side: Namespaces and CRDs first (waiting until they serve), then the rest. */
async function applyAll(objects: Obj[], fieldManager: string, namespace?: string): Promise<{ id: string; status: number; message: string }[]> {
  const first = objects.filter((o) => o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition');
  const rest = objects.filter((o) => !first.includes(o));
  const results: { id: string; status: number; message: string }[] = [];
  for (const o of [...first, ...rest]) {
    if (o === rest[0]) for (const crd of first.filter((x) => x.kind === 'CustomResourceDefinition')) await cp.waitEstablished(crd.metadata.name);
    // The same CRDs and cluster roles come from several renders: the later manager takes them over.
    const r = await cp.apply(await discovery.path(o, namespace), o, { fieldManager, force: true });
    results.push({ id: `${o.kind}/${o.metadata.name}`, status: r.status, message: r.status >= 300 ? r.text.slice(0, 600) : '' });
  }
  return results;
}

beforeAll(async () => {
  if (skip) return;
  if (bins.skip !== undefined) return;
  cp = await ControlPlane.start(bins);
  discovery = new Discovery(cp);
});

afterAll(async () => {
  await cp?.stop();
});

describe.skipIf(skip)(`shipped manifests on a real kube-apiserver${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it(`kubectl kustomize deploy: every object accepted by server-side apply (ServiceMonitor/PrometheusRule CRDs from ${PROMETHEUS_OPERATOR.module}@${PROMETHEUS_OPERATOR.version})`, async () => {
    expect(await applyAll(prometheusOperatorCrds(['servicemonitors', 'prometheusrules']), 'prometheus-operator')).toEqual([
      { id: 'CustomResourceDefinition/servicemonitors.monitoring.coreos.com', status: 201, message: '' },
      { id: 'CustomResourceDefinition/prometheusrules.monitoring.coreos.com', status: 201, message: '' },
    ]);
    const objects = kustomize('deploy');
    const results = await applyAll(objects, 'kustomize');
    expect(results.filter((r) => r.status >= 300)).toEqual([]);
    expect(results).toHaveLength(objects.length);
    // kustomize v5.5 puts a namespace on the (cluster-scoped) admission policy; the server drops it.
    const vap = await cp.ok<Obj>('GET', '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/vfio-handoff-agent-own-node');
    expect(vap.metadata.namespace).toBeUndefined();
    // That it compiles and denies is shown by the least-privilege tests below (status.typeChecking is
    // written by kube-controller-manager, which this control plane does not run).
  });

  it('kubectl kustomize deploy/plugin (the plugin-only DaemonSet) is accepted', async () => {
    const results = await applyAll(kustomize('deploy/plugin'), 'kustomize-plugin');
    expect(results.filter((r) => r.status >= 300)).toEqual([]);
  });

  it('helm template with default values: every object accepted', async () => {
    await cp.ok('POST', '/api/v1/namespaces', { body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'gpu-system' } } });
    const objects = helmTemplate({}, 'gpu-system');
    const results = await applyAll(objects, 'helm-default', 'gpu-system');
    expect(results.filter((r) => r.status >= 300)).toEqual([]);
    expect(results.map((r) => r.id)).toContain('ValidatingAdmissionPolicy/vh-vfio-handoff-agent-own-node');
  });

  it('helm template with non-default values (monitoring, dashboard, plugin, policies, embedded plugin, no KubeVirt): every object accepted', async () => {
    await cp.ok('POST', '/api/v1/namespaces', { body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'infra-gpu' } } });
    const values = {
      image: { repository: 'registry.example.com/infra/vfio-handoff', tag: '0.1.0-rc1', pullPolicy: 'Always', pullSecrets: [{ name: 'regcred' }] },
      operator: { replicas: 3, metricsPort: 19465, nodeSelector: { 'node-role.kubernetes.io/control-plane': '' }, tolerations: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }] },
      agent: { devicePlugin: 'embedded', metricsPort: 19464, kubeletDir: '/var/lib/k0s/kubelet', stateDir: '/var/lib/vh-state', nodeSelector: { 'handoff.dev/gpu-pool': 'vm' }, resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '512Mi' } } },
      plugin: { enabled: true },
      metrics: { serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'kube-prometheus' } }, prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true } },
      kubevirt: { enabled: false },
      policies: [
        { name: 'vm-gpus', spec: { nodeSelector: { matchLabels: { 'handoff.dev/gpu-pool': 'vm' } }, gpus: { vendorDevices: ['10de:2331'] }, resourceName: 'example.com/h100' } },
        { name: 'ws-boot', spec: { nodeSelector: { matchLabels: { 'kubernetes.io/hostname': 'ws-01' } }, gpus: { classes: ['0x0300'] }, allowBootGpu: true } },
      ],
    };
    const objects = helmTemplate(values, 'infra-gpu', 'gpu');
    const kinds = new Set(objects.map((o) => o.kind));
    for (const k of ['ServiceMonitor', 'PrometheusRule', 'GpuPassthrough', 'ConfigMap']) expect(kinds).toContain(k);
    const results = await applyAll(objects, 'helm-custom', 'infra-gpu');
    expect(results.filter((r) => r.status >= 300)).toEqual([]);
  });

  it('deploy/samples are accepted', async () => {
    const samples = ['gpupassthrough-all-gpus', 'gpupassthrough-boot-gpu', 'gpupassthrough-by-model', 'nodegpupassthrough-example']
      .flatMap((f) => [parse(readFileSync(join(REPO_ROOT, 'deploy/samples', `${f}.yaml`), 'utf8')) as Obj]);
    const results = await applyAll(samples, 'samples');
    expect(results.filter((r) => r.status >= 300)).toEqual([]);
  });
});

/** Rule text → message, read from the CRDs the server was given. */
function celMessages(file: string): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (n: unknown): void => {
    if (Array.isArray(n)) n.forEach(visit);
    else if (n && typeof n === 'object') {
      const v = (n as Record<string, unknown>)['x-kubernetes-validations'];
      if (Array.isArray(v)) for (const r of v as { rule: string; message: string }[]) out.set(r.rule, r.message);
      Object.values(n).forEach(visit);
    }
  };
  visit(parse(readFileSync(join(REPO_ROOT, 'deploy/crds', file), 'utf8')));
  return out;
}

describe.skipIf(skip)(`CEL rules of our CRDs on a real kube-apiserver${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const gptRules = celMessages('handoff.dev_gpupassthroughs.yaml');
  const ngpRules = celMessages('handoff.dev_nodegpupassthroughs.yaml');
  const seen = new Set<string>();
  let n = 0;
  const gpt = (spec: Record<string, unknown>): Obj => ({ apiVersion: 'handoff.dev/v1alpha1', kind: 'GpuPassthrough', metadata: { name: `cel-${n++}` }, spec });

  /** Creates with dryRun=All: 201 or a 422 whose causes carry the CRD messages. */
  async function create(o: Obj): Promise<{ status: number; messages: string[] }> {
    const r = await cp.request<{ details?: { causes?: { message: string }[] } }>('POST', '/apis/handoff.dev/v1alpha1/gpupassthroughs?dryRun=All', { body: o });
    return { status: r.status, messages: (r.body.details?.causes ?? []).map((c) => c.message) };
  }

  function expectVerdict(res: { status: number; messages: string[] }, message: string | undefined): void {
    if (message === undefined) {
      expect(res).toEqual({ status: 201, messages: [] });
    } else {
      expect(res.status).toBe(422);
      expect(res.messages.some((m) => m.includes(message)), res.messages.join('\n')).toBe(true);
      seen.add(message);
    }
  }

  const msg = (fragment: string): string => {
    const m = [...gptRules.values(), ...ngpRules.values()].find((x) => x.includes(fragment));
    if (!m) throw new Error(`no CEL rule message contains ${fragment}`);
    return m;
  };

  const cases: [string, Record<string, unknown>, string | undefined][] = [
    ['In with values', { nodeSelector: { matchExpressions: [{ key: 'a', operator: 'In', values: ['x'] }] } }, undefined],
    ['Exists alone', { nodeSelector: { matchExpressions: [{ key: 'a', operator: 'Exists' }] } }, undefined],
    ['In without values', { nodeSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } }, msg('In and NotIn')],
    ['Exists with values', { nodeSelector: { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] } }, msg('In and NotIn')],
    ['a prefixed label key', { nodeSelector: { matchLabels: { 'handoff.dev/gpu-pool': 'vm' } } }, undefined],
    ['a label key with a space', { nodeSelector: { matchLabels: { 'gpu pool': 'vm' } } }, msg('valid label key')],
    ['a label key with two slashes', { nodeSelector: { matchLabels: { 'a/b/c': 'x' } } }, msg('valid label key')],
    ['display and accelerator classes', { gpus: { classes: ['0x0300', '0x030200', '0x1200'] } }, undefined],
    ['a network class', { gpus: { classes: ['0x0302', '0x0200'] } }, msg('display controllers')],
    ['a vendor resource name', { resourceName: 'example.com/h100' }, undefined],
    ['a kubernetes.io resource name', { resourceName: 'kubernetes.io/gpu' }, msg('valid extended resource name for kubelet')],
    ['a kubernetes.io subdomain', { resourceName: 'gpu.kubernetes.io/h100' }, msg('valid extended resource name for kubelet')],
    ['requests. prefix', { resourceName: 'requests.example.com/gpu' }, msg('valid extended resource name for kubelet')],
    ['boot GPU with an address and a node', { allowBootGpu: true, gpus: { addresses: ['0000:01:00.0'] }, nodeSelector: { matchLabels: { 'kubernetes.io/hostname': 'ws-01' } } }, undefined],
    ['boot GPU without a GPU selector', { allowBootGpu: true, nodeSelector: { matchLabels: { 'kubernetes.io/hostname': 'ws-01' } } }, msg('name at least one vendorDevice')],
    ['boot GPU on every node', { allowBootGpu: true, gpus: { addresses: ['0000:01:00.0'] } }, msg('non-empty nodeSelector')],
  ];
  it.each(cases)('GpuPassthrough: %s', async (_name, spec, message) => {
    expectVerdict(await create(gpt(spec)), message);
  });

  it('GpuPassthrough: resourceName is immutable (transition rule), other updates pass', async () => {
    const o = gpt({ resourceName: 'example.com/a' });
    const created = await cp.ok<Obj>('POST', '/apis/handoff.dev/v1alpha1/gpupassthroughs', { body: o });
    const path = `/apis/handoff.dev/v1alpha1/gpupassthroughs/${o.metadata.name}`;
    const change = (spec: Record<string, unknown>) => cp.request<{ details?: { causes?: { message: string }[] } }>('PUT', `${path}?dryRun=All`, { body: { ...created, spec: { ...(created['spec'] as object), ...spec } } });
    expect((await change({ paused: true })).status).toBe(200);
    const renamed = await change({ resourceName: 'example.com/b' });
    expect(renamed.status).toBe(422);
    expect(renamed.body.details?.causes?.map((c) => c.message).join('\n')).toContain(msg('resourceName is immutable'));
    seen.add(msg('resourceName is immutable'));
    const unset = await cp.request('PUT', `${path}?dryRun=All`, { body: { ...created, spec: { ...(created['spec'] as object), resourceName: undefined } } });
    expect(unset.status).toBe(422);
  });

  it('NodeGpuPassthrough: a Failed GPU needs a reason (status subresource)', async () => {
    const created = await cp.ok<Obj>('POST', '/apis/handoff.dev/v1alpha1/nodegpupassthroughs', { body: { apiVersion: 'handoff.dev/v1alpha1', kind: 'NodeGpuPassthrough', metadata: { name: 'cel-node' }, spec: { gpus: [] } } });
    const status = (gpu: Record<string, unknown>) => cp.request<{ details?: { causes?: { message: string }[] } }>('PUT', '/apis/handoff.dev/v1alpha1/nodegpupassthroughs/cel-node/status?dryRun=All', {
      body: { ...created, status: { gpus: [{ address: '0000:41:00.0', lastTransitionTime: '2026-01-01T00:00:00Z', ...gpu }] } },
    });
    expect((await status({ phase: 'Failed', reason: 'GroupNotViable' })).status).toBe(200);
    expect((await status({ phase: 'Ready' })).status).toBe(200);
    for (const bad of [{ phase: 'Failed' }, { phase: 'Failed', reason: '' }]) {
      const r = await status(bad);
      expect(r.status).toBe(422);
      expect(r.body.details?.causes?.map((c) => c.message).join('\n')).toContain(msg('a Failed GPU needs a reason'));
    }
    seen.add(msg('a Failed GPU needs a reason'));
  });

  it('NodeGpuPassthrough: a GPU\'s resourceName is empty (plugin default) or kubelet\'s extended-resource rule', async () => {
    const create = (resourceName: string) =>
      cp.request<{ details?: { causes?: { message: string }[] } }>('POST', '/apis/handoff.dev/v1alpha1/nodegpupassthroughs?dryRun=All', {
        body: { apiVersion: 'handoff.dev/v1alpha1', kind: 'NodeGpuPassthrough', metadata: { name: 'cel-names' }, spec: { gpus: [{ address: '0000:41:00.0', policy: 'p', resourceName }] } },
      });
    expect((await create('')).status).toBe(201);
    expect((await create('example.com/h100')).status).toBe(201);
    const message = msg('resourceName must be empty or a valid extended resource name');
    for (const bad of ['kubernetes.io/gpu', 'gpu.kubernetes.io/h100', 'requests.example.com/gpu']) {
      const r = await create(bad);
      expect(r.status, bad).toBe(422);
      expect(r.body.details?.causes?.map((c) => c.message).join('\n')).toContain(message);
    }
    seen.add(message);
  });

  it('every CEL rule of both CRDs was seen rejecting with its own message', () => {
    expect([...new Set([...gptRules.values(), ...ngpRules.values()])].filter((m) => !seen.has(m))).toEqual([]);
  });
});

describe.skipIf(skip)(`least privilege, enforced by the real server${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const NGP = '/apis/handoff.dev/v1alpha1/nodegpupassthroughs';
  let agentA: string;
  let unbound: string;
  let operator: string;

  const ngp = (name: string): Obj => ({ apiVersion: 'handoff.dev/v1alpha1', kind: 'NodeGpuPassthrough', metadata: { name }, spec: { gpus: [] } });

  beforeAll(async () => {
    if (skip) return;
    // The kustomize test above installed deploy/ (CRDs, RBAC, the admission policy); make sure on its own too.
    await applyAll(kustomize('deploy').filter((o) => !o.apiVersion.startsWith('monitoring.coreos.com')), 'kustomize');
    for (const name of ['lp-a', 'lp-b']) await cp.ok('POST', '/api/v1/nodes', { body: { apiVersion: 'v1', kind: 'Node', metadata: { name } } });
    agentA = await cp.podBoundToken(NS, 'vfio-handoff-agent', 'lp-a');
    unbound = await cp.serviceAccountToken(NS, 'vfio-handoff-agent');
    operator = await cp.serviceAccountToken(NS, 'vfio-handoff-operator');
    const who = await cp.ok<{ status: { userInfo: { username: string; extra?: Record<string, string[]> } } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
      token: agentA,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    expect(who.status.userInfo.username).toBe(AGENT);
    expect(who.status.userInfo.extra?.['authentication.kubernetes.io/node-name']).toEqual(['lp-a']);
  });

  it('the agent of node A creates and updates the status of its own NodeGpuPassthrough', async () => {
    expect((await cp.request('POST', NGP, { token: agentA, body: ngp('lp-a') })).status).toBe(201);
    const patch = await cp.request('PATCH', `${NGP}/lp-a/status`, { token: agentA, contentType: 'application/merge-patch+json', body: { status: { observedGeneration: 1 } } });
    expect(patch.status, patch.text).toBe(200);
  });

  it("denies the agent of node A node B's object and node B's status, with the policy's message", async () => {
    const create = await cp.request<{ message: string }>('POST', NGP, { token: agentA, body: ngp('lp-b') });
    expect(create.status).toBe(403);
    expect(create.body.message).toContain('may write only the NodeGpuPassthrough of its own node (lp-a), not lp-b');
    await cp.ok('POST', NGP, { body: ngp('lp-b') });
    for (const [method, type] of [['PATCH', 'application/merge-patch+json'], ['PATCH', 'application/apply-patch+yaml']] as const) {
      const r = await cp.request<{ message: string }>(method, `${NGP}/lp-b/status?fieldManager=agent`, { token: agentA, contentType: type, body: { apiVersion: 'handoff.dev/v1alpha1', kind: 'NodeGpuPassthrough', metadata: { name: 'lp-b' }, status: { observedGeneration: 7 } } });
      expect(r.status, r.text).toBe(403);
      expect(r.body.message).toContain('not lp-b');
    }
    const obj = await cp.ok<Obj>('GET', `${NGP}/lp-b`, { token: agentA });
    const put = await cp.request('PUT', `${NGP}/lp-b/status`, { token: agentA, body: { ...obj, status: { observedGeneration: 7 } } });
    expect(put.status).toBe(403);
  });

  it('denies a token of the agent ServiceAccount that is not bound to a node, and any spec write (RBAC)', async () => {
    const r = await cp.request<{ message: string }>('POST', NGP, { token: unbound, body: ngp('lp-c') });
    expect(r.status).toBe(403);
    expect(r.body.message).toContain('token not bound to a node');
    const spec = await cp.request<{ message: string }>('PATCH', `${NGP}/lp-a`, { token: agentA, contentType: 'application/merge-patch+json', body: { spec: { paused: true } } });
    expect(spec.status).toBe(403);
    expect(spec.body.message).toMatch(/cannot patch resource "nodegpupassthroughs"/);
  });

  it('the operator writes every node spec (the policy does not bind it) but reads no Secrets', async () => {
    const r = await cp.request('PATCH', `${NGP}/lp-b`, { token: operator, contentType: 'application/merge-patch+json', body: { spec: { paused: true } } });
    expect(r.status, r.text).toBe(200);
    for (const path of ['/api/v1/secrets', `/api/v1/namespaces/${NS}/secrets`, '/api/v1/namespaces/kube-system/secrets/anything']) {
      const s = await cp.request('GET', path, { token: operator });
      expect(s.status, path).toBe(403);
    }
    expect((await cp.request('GET', '/api/v1/secrets', { token: agentA })).status).toBe(403);
  });

  it('the device-plugin containers get no ServiceAccount token from the real ServiceAccount admission', async () => {
    const pods: { from: string; containers: { name: string; volumeMounts?: { name: string; mountPath: string }[] }[]; volumes: { name: string; projected?: { sources: { serviceAccountToken?: unknown }[] } }[] }[] = [];
    for (const [from, objects] of [['deploy', kustomize('deploy')], ['deploy/plugin', kustomize('deploy/plugin')], ['helm', helmTemplate({ plugin: { enabled: true } }, NS, 'tok')]] as const) {
      for (const ds of objects.filter((o) => o.kind === 'DaemonSet')) {
        const template = (ds['spec'] as { template: { metadata?: object; spec: Record<string, unknown> } }).template;
        const sa = template.spec['serviceAccountName'] as string;
        if (!(await cp.request('GET', `/api/v1/namespaces/${NS}/serviceaccounts/${sa}`)).status.toString().startsWith('2')) {
          await cp.ok('POST', `/api/v1/namespaces/${NS}/serviceaccounts`, { body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa } } });
        }
        const pod = await cp.ok<{ spec: (typeof pods)[number] }>('POST', `/api/v1/namespaces/${NS}/pods?dryRun=All`, {
          body: { apiVersion: 'v1', kind: 'Pod', metadata: { ...(template.metadata ?? {}), name: `${ds.metadata.name}-x` }, spec: { ...template.spec, nodeName: 'lp-a' } },
        });
        pods.push({ from: `${from}:${ds.metadata.name}`, containers: pod.spec.containers, volumes: pod.spec.volumes ?? [] });
      }
    }
    const pluginContainers = pods.flatMap((p) => p.containers.filter((c) => c.name !== 'agent').map((c) => ({ pod: p, c })));
    expect(pluginContainers.length).toBeGreaterThanOrEqual(3);
    for (const { pod, c } of pluginContainers) {
      const tokenVolumes = new Set(pod.volumes.filter((v) => v.projected?.sources.some((s) => s.serviceAccountToken)).map((v) => v.name));
      const mounts = (c.volumeMounts ?? []).filter((m) => tokenVolumes.has(m.name) || m.mountPath.includes('serviceaccount'));
      expect(mounts, `${pod.from}/${c.name}`).toEqual([]);
    }
    // The agent container does get its token (the kube-api-access volume of the DaemonSet).
    const agents = pods.flatMap((p) => p.containers.filter((c) => c.name === 'agent'));
    expect(agents.length).toBeGreaterThan(0);
    for (const c of agents) expect(c.volumeMounts?.some((m) => m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount')).toBe(true);
  });
});
