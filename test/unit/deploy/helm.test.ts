import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { REPO_ROOT, ensureHelm, ensureKubectl } from './support/tools.js';
import type { K8sObject } from './support/validate.js';
import { allows, parseObjects, podSpec, rulesOf, validateObjects } from './support/validate.js';

const CHART = join(REPO_ROOT, 'helm/vfio-handoff');
const helm = ensureHelm();
const kubectl = ensureKubectl();
const work = mkdtempSync(join(tmpdir(), 'vfio-handoff-helm-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let fileCount = 0;
function valuesFile(values: unknown): string {
  const f = join(work, `values-${fileCount++}.yaml`);
  writeFileSync(f, stringify(values));
  return f;
}

function template(values: unknown = {}, namespace = 'gpu-system'): { ok: boolean; objects: K8sObject[]; stderr: string } {
  const r = spawnSync(helm.path ?? 'helm', ['template', 'vh', CHART, '--namespace', namespace, '--include-crds', '-f', valuesFile(values)], { encoding: 'utf8' });
  return { ok: r.status === 0, objects: r.status === 0 ? parseObjects(r.stdout) : [], stderr: r.stderr };
}

const NON_DEFAULT = {
  image: { repository: 'registry.example.com/infra/vfio-handoff', tag: '0.1.0-rc1', pullPolicy: 'Always', pullSecrets: [{ name: 'regcred' }] },
  operator: { replicas: 3, metricsPort: 19465, nodeSelector: { 'node-role.kubernetes.io/control-plane': '' }, tolerations: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }] },
  agent: { metricsPort: 19464, kubeletDir: '/var/lib/k0s/kubelet', stateDir: '/var/lib/vh-state', nodeSelector: { 'handoff.dev/gpu-pool': 'vm' }, resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '512Mi' } } },
  plugin: { enabled: true },
  metrics: { serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'kube-prometheus' } }, prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true } },
  kubevirt: { enabled: false },
  policies: [{ name: 'vm-gpus', spec: { nodeSelector: { matchLabels: { 'handoff.dev/gpu-pool': 'vm' } }, gpus: { vendorDevices: ['10de:2331'] }, resourceName: 'example.com/h100' } }],
};

describe.skipIf(!helm.path)('helm chart (real helm template)', () => {
  it('lints', () => {
    const r = spawnSync(helm.path ?? 'helm', ['lint', CHART, '--strict'], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toContain('0 chart(s) failed');
  });

  it('renders the default values into valid objects in the release namespace', () => {
    const { ok, objects, stderr } = template();
    expect(ok, stderr).toBe(true);
    expect(validateObjects(objects, 'gpu-system')).toEqual([]);
    // Off by default: nothing that needs the Prometheus Operator, no plugin, no policy.
    expect(objects.map((o) => o.kind)).not.toContain('ServiceMonitor');
    expect(objects.map((o) => o.kind)).not.toContain('PrometheusRule');
    expect(objects.map((o) => o.kind)).not.toContain('GpuPassthrough');
    const image = podSpec(objects.find((o) => o.kind === 'DaemonSet') as K8sObject)?.containers[0]?.image;
    const chart = parse(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string };
    expect(image).toBe(`ghcr.io/vfio-handoff/vfio-handoff:${chart.appVersion}`);
  });

  it('renders non-default values into valid objects that honour them', () => {
    const { ok, objects, stderr } = template(NON_DEFAULT);
    expect(ok, stderr).toBe(true);
    expect(validateObjects(objects, 'gpu-system')).toEqual([]);
    const kinds = objects.map((o) => o.kind);
    expect(kinds.filter((k) => k === 'ServiceMonitor')).toHaveLength(2);
    expect(kinds).toContain('PrometheusRule');
    expect(kinds).toContain('ConfigMap');
    expect(kinds.filter((k) => k === 'DaemonSet')).toHaveLength(2);
    const agent = objects.find((o) => o.kind === 'DaemonSet' && o.metadata.name.endsWith('-agent')) as K8sObject;
    const spec = podSpec(agent);
    expect(spec?.containers[0]?.image).toBe('registry.example.com/infra/vfio-handoff:0.1.0-rc1');
    expect(spec?.containers[0]?.args).toContain(':19464');
    expect((spec?.volumes ?? []).map((v) => v.hostPath?.path)).toContain('/var/lib/k0s/kubelet/device-plugins');
    expect((spec?.volumes ?? []).map((v) => v.hostPath?.path)).toContain('/var/lib/vh-state');
    const operator = objects.find((o) => o.kind === 'Deployment') as unknown as { spec: { replicas: number } };
    expect(operator.spec.replicas).toBe(3);
    // KubeVirt integration off: the operator loses its KubeVirt RBAC.
    expect(allows(rulesOf(objects, 'ClusterRole', '-operator'), 'kubevirt.io', 'kubevirts', 'update')).toBe(false);
    const policy = objects.find((o) => o.kind === 'GpuPassthrough') as unknown as { spec: { resourceName: string } };
    expect(policy.spec.resourceName).toBe('example.com/h100');
    const sm = objects.find((o) => o.kind === 'ServiceMonitor') as K8sObject;
    expect(sm.metadata.labels?.release).toBe('kube-prometheus');
  });

  it('puts the alert rules and the dashboard in unchanged, with Prometheus templates left intact', () => {
    const { objects } = template(NON_DEFAULT);
    const rule = objects.find((o) => o.kind === 'PrometheusRule') as unknown as { spec: unknown };
    expect(rule.spec).toEqual(parse(readFileSync(join(REPO_ROOT, 'monitoring/alerts.yaml'), 'utf8')));
    expect(JSON.stringify(rule.spec)).toContain('{{ $labels.node }}');
    const cm = objects.find((o) => o.kind === 'ConfigMap') as unknown as { data: Record<string, string> };
    expect(JSON.parse(cm.data['vfio-handoff.json'] ?? '')).toEqual(JSON.parse(readFileSync(join(REPO_ROOT, 'monitoring/dashboard.json'), 'utf8')));
  });

  it('ships a NetworkPolicy per component for the metrics/health ports, on by default (issue 17)', () => {
    const policies = (values: unknown) => template(values).objects.filter((o) => o.kind === 'NetworkPolicy') as unknown as { metadata: { name: string }; spec: { ingress: { ports: { port: number }[]; from?: unknown[] }[] } }[];
    const byDefault = policies({});
    expect(byDefault.map((p) => p.metadata.name).sort()).toEqual(['vh-vfio-handoff-agent-metrics', 'vh-vfio-handoff-operator-metrics']);
    const agent = byDefault.find((p) => p.metadata.name.endsWith('-agent-metrics'))!;
    expect(agent.spec.ingress[0]?.ports.map((p) => p.port)).toEqual([9464, 9466]);
    expect(agent.spec.ingress[0]?.from).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
    // Ports follow the values (validateObjects checks each against the pods' container ports).
    const moved = template({ ...NON_DEFAULT, agent: { ...NON_DEFAULT.agent, devicePlugin: 'embedded' } });
    expect(validateObjects(moved.objects, 'gpu-system')).toEqual([]);
    expect(policies({ agent: { metricsPort: 19464, devicePlugin: 'embedded' } }).find((p) => p.metadata.name.endsWith('-agent-metrics'))?.spec.ingress[0]?.ports.map((p) => p.port)).toEqual([19464]);
    expect(policies({ metrics: { networkPolicy: { enabled: false } } })).toEqual([]);
    expect(template({ metrics: { networkPolicy: { enabled: true, from: [{ bogus: {} }] } } }).ok).toBe(false);
  });

  // helm template and kubectl kustomize are two process starts: seconds on a busy machine.
  it('matches the kustomize manifests in args, host mounts, security and RBAC', () => {
    if (!kubectl.path) return;
    const chart = template({ kubevirt: { enabled: true } }).objects;
    const kust = parseObjects(execFileSync(kubectl.path, ['kustomize', join(REPO_ROOT, 'deploy')], { encoding: 'utf8' }));
    const pick = (objs: K8sObject[], kind: string, suffix: string) => objs.find((o) => o.kind === kind && o.metadata.name.endsWith(suffix)) as K8sObject;
    for (const [kind, suffix] of [
      ['DaemonSet', '-agent'],
      ['Deployment', '-operator'],
    ] as const) {
      const a = podSpec(pick(chart, kind, suffix));
      const b = podSpec(pick(kust, kind, suffix));
      // Every container: the agent pod has the privileged agent and the unprivileged device plugin.
      expect(a?.containers.map((c) => c.name), kind).toEqual(b?.containers.map((c) => c.name));
      for (const [i, c] of (b?.containers ?? []).entries()) {
        const id = `${kind}/${c.name}`;
        expect(a?.containers[i]?.args, id).toEqual(c.args);
        expect(a?.containers[i]?.securityContext, id).toEqual(c.securityContext);
        expect(a?.containers[i]?.volumeMounts, id).toEqual(c.volumeMounts);
        expect(a?.containers[i]?.env, id).toEqual(c.env);
        expect(a?.containers[i]?.ports, id).toEqual(c.ports);
      }
      expect(a?.volumes, kind).toEqual(b?.volumes);
      expect(a?.securityContext, kind).toEqual(b?.securityContext);
      expect(a?.automountServiceAccountToken, kind).toEqual(b?.automountServiceAccountToken);
    }
    for (const suffix of ['-agent', '-operator']) {
      expect(rulesOf(chart, 'ClusterRole', suffix)).toEqual(rulesOf(kust, 'ClusterRole', suffix));
    }
    const chartPlugin = podSpec(pick(template({ plugin: { enabled: true } }).objects, 'DaemonSet', '-plugin'));
    const kustPlugin = podSpec(pick(parseObjects(execFileSync(kubectl.path, ['kustomize', join(REPO_ROOT, 'deploy/plugin')], { encoding: 'utf8' })), 'DaemonSet', '-plugin'));
    expect(chartPlugin?.containers[0]?.args).toEqual(kustPlugin?.containers[0]?.args);
    expect(chartPlugin?.containers[0]?.securityContext).toEqual(kustPlugin?.containers[0]?.securityContext);
    expect(chartPlugin?.volumes).toEqual(kustPlugin?.volumes);
  }, 60_000);

  it('splits the device plugin into an unprivileged container by default, and embeds it on request', () => {
    const agentOf = (values: unknown) => podSpec(template(values).objects.find((o) => o.kind === 'DaemonSet' && o.metadata.name.endsWith('-agent')) as K8sObject)!;
    const split = agentOf({ agent: { pluginMetricsPort: 19466 } });
    expect(split.containers.map((c) => c.name)).toEqual(['agent', 'device-plugin']);
    expect(split.containers[0]?.args).toEqual(expect.arrayContaining(['--device-plugin', 'off', '--resource-names-file']));
    expect(split.containers[1]?.args).toContain(':19466');
    expect(split.containers[1]?.securityContext?.privileged).toBeUndefined();
    expect(split.containers[1]?.ports?.[0]?.containerPort).toBe(19466);

    const embedded = agentOf({ agent: { devicePlugin: 'embedded' } });
    expect(embedded.containers.map((c) => c.name)).toEqual(['agent']);
    const args = embedded.containers[0]?.args ?? [];
    expect(args).not.toContain('--device-plugin');
    expect(args).not.toContain('--resource-names-file');
    expect(args[args.indexOf('--device-plugin-dir') + 1]).toBe('/var/lib/kubelet/device-plugins');
    expect(embedded.containers[0]?.volumeMounts?.map((m) => m.mountPath)).toContain('/var/lib/kubelet/device-plugins');
    expect(embedded.volumes?.map((v) => v.name)).not.toContain('resource-names');
    expect(embedded.automountServiceAccountToken).toBeUndefined();
    const embeddedObjects = template({ agent: { devicePlugin: 'embedded' }, metrics: { serviceMonitor: { enabled: true } } }).objects;
    expect(validateObjects(embeddedObjects, 'gpu-system')).toEqual([]);
    const sm = embeddedObjects.find((o) => o.kind === 'ServiceMonitor' && o.metadata.name.endsWith('-agent')) as unknown as { spec: { endpoints: { port: string }[] } };
    expect(sm.spec.endpoints.map((e) => e.port)).toEqual(['metrics']);
    const splitSm = template({ metrics: { serviceMonitor: { enabled: true } } }).objects.find((o) => o.kind === 'ServiceMonitor' && o.metadata.name.endsWith('-agent')) as unknown as {
      spec: { endpoints: { port: string }[] };
    };
    expect(splitSm.spec.endpoints.map((e) => e.port)).toEqual(['metrics', 'plugin-metrics']);
  });

  it.each([
    ['device plugin mode neither split nor embedded', { agent: { devicePlugin: 'both' } }],
    ['image tag latest', { image: { tag: 'latest' } }],
    ['unknown top-level key', { agnet: {} }],
    ['privileged metrics port', { agent: { metricsPort: 80 } }],
    ['relative state dir', { agent: { stateDir: 'var/lib/x' } }],
    ['state dir with ..', { agent: { stateDir: '/var/lib/../etc' } }],
    ['bad pull policy', { image: { pullPolicy: 'Sometimes' } }],
    ['bad policy name', { policies: [{ name: 'Bad_Name' }] }],
    ['bad toleration operator', { agent: { tolerations: [{ operator: 'Maybe' }] } }],
    ['bad memory quantity', { operator: { resources: { limits: { memory: 'lots' } } } }],
    ['two operators without leader election', { operator: { leaderElect: false, replicas: 2 } }],
    ['plugin without node selector', { plugin: { enabled: true, nodeSelector: { 'handoff.dev/mode': null } } }],
  ])('refuses to render with %s', (_name, values) => {
    const r = template(values);
    expect(r.ok).toBe(false);
    expect(r.stderr).toMatch(/schema|needs/);
  });
});

describe('values.schema.json (ajv)', () => {
  const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as object;
  const defaults = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
  const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
  const merged = (patch: Record<string, unknown>): unknown => {
    const out = structuredClone(defaults) as Record<string, Record<string, unknown>>;
    for (const [k, v] of Object.entries(patch)) out[k] = typeof v === 'object' && v && !Array.isArray(v) ? { ...(out[k] ?? {}), ...v } : (v as Record<string, unknown>);
    return out;
  };

  it('accepts the default and the non-default values', () => {
    expect(validate(defaults), JSON.stringify(validate.errors)).toBe(true);
    expect(validate(merged(NON_DEFAULT)), JSON.stringify(validate.errors)).toBe(true);
  });

  it.each([
    { image: { tag: 'latest' } },
    { agent: { metricsPort: 70000 } },
    { agent: { kubeletDir: '/var/lib/kubelet/' } },
    { metrics: { serviceMonitor: { enabled: 'yes' } } },
    { metrics: { serviceMonitor: { interval: 'often' } } },
    { kubevirt: { enabled: true, register: true } },
    { operator: { replicas: 0 } },
  ])('rejects %j', (patch) => {
    expect(validate(merged(patch))).toBe(false);
  });
});

describe('chart copies stay in sync with their sources (scripts/sync-crds.mjs)', () => {
  it('has the CRDs, alert rules and dashboard identical to deploy/ and monitoring/', () => {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/sync-crds.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    for (const f of ['handoff.dev_gpupassthroughs.yaml', 'handoff.dev_nodegpupassthroughs.yaml']) {
      expect(readFileSync(join(CHART, 'crds', f), 'utf8')).toBe(readFileSync(join(REPO_ROOT, 'deploy/crds', f), 'utf8'));
    }
  });

  it('reports drift and repairs it', () => {
    const root = mkdtempSync(join(work, 'sync-'));
    for (const d of ['deploy', 'monitoring', 'helm']) cpSync(join(REPO_ROOT, d), join(root, d), { recursive: true });
    const crd = join(root, 'helm/vfio-handoff/crds/handoff.dev_gpupassthroughs.yaml');
    writeFileSync(crd, `${readFileSync(crd, 'utf8')}# edited by hand\n`);
    writeFileSync(join(root, 'helm/vfio-handoff/crds/stale.yaml'), 'kind: Stale\n');
    const script = join(REPO_ROOT, 'scripts/sync-crds.mjs');
    const check = spawnSync(process.execPath, [script, '--check', '--root', root], { encoding: 'utf8' });
    expect(check.status).toBe(1);
    expect(check.stderr).toContain('helm/vfio-handoff/crds/handoff.dev_gpupassthroughs.yaml');
    expect(check.stderr).toContain('helm/vfio-handoff/crds/stale.yaml');
    expect(spawnSync(process.execPath, [script, '--root', root]).status).toBe(0);
    expect(spawnSync(process.execPath, [script, '--check', '--root', root]).status).toBe(0);
  });
});
