import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { IN_CI, REPO_ROOT, ensureKubectl } from './support/tools.js';
import type { K8sObject } from './support/validate.js';
import { CLI_FLAGS, allows, checkArgs, parseObjects, podSpec, rulesOf, validateObjects } from './support/validate.js';

const kubectl = ensureKubectl();

function kustomize(dir: string): K8sObject[] {
  return parseObjects(execFileSync(kubectl.path ?? 'kubectl', ['kustomize', join(REPO_ROOT, dir)], { encoding: 'utf8' }));
}

describe.skipIf(!kubectl.path)('deploy/ (kubectl kustomize)', () => {
  const objects = kubectl.path ? kustomize('deploy') : [];
  const byKind = (kind: string) => objects.filter((o) => o.kind === kind);

  it('renders every expected object', () => {
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(kinds).toEqual(
      [
        'ClusterRole/vfio-handoff-agent',
        'ClusterRole/vfio-handoff-operator',
        'ClusterRoleBinding/vfio-handoff-agent',
        'ClusterRoleBinding/vfio-handoff-operator',
        'CustomResourceDefinition/gpupassthroughs.handoff.dev',
        'CustomResourceDefinition/nodegpupassthroughs.handoff.dev',
        'DaemonSet/vfio-handoff-agent',
        'Deployment/vfio-handoff-operator',
        'Namespace/vfio-handoff',
        'NetworkPolicy/vfio-handoff-agent-metrics',
        'NetworkPolicy/vfio-handoff-operator-metrics',
        'PrometheusRule/vfio-handoff',
        'Role/vfio-handoff-operator-leader-election',
        'RoleBinding/vfio-handoff-operator-leader-election',
        'Service/vfio-handoff-agent-metrics',
        'Service/vfio-handoff-operator-metrics',
        'ServiceAccount/vfio-handoff-agent',
        'ServiceAccount/vfio-handoff-operator',
        'ServiceMonitor/vfio-handoff-agent',
        'ServiceMonitor/vfio-handoff-operator',
        'ValidatingAdmissionPolicy/vfio-handoff-agent-own-node',
        'ValidatingAdmissionPolicyBinding/vfio-handoff-agent-own-node',
      ].sort(),
    );
  });

  it('passes the shared shape checks (args are CLI flags, pinned images, privilege, RBAC, selectors)', () => {
    expect(validateObjects(objects, 'vfio-handoff')).toEqual([]);
  });

  it('ships the CRDs of deploy/crds unchanged', () => {
    for (const file of readdirSync(join(REPO_ROOT, 'deploy/crds')).filter((f) => f.endsWith('.yaml'))) {
      const source = parse(readFileSync(join(REPO_ROOT, 'deploy/crds', file), 'utf8')) as K8sObject;
      const rendered = objects.find((o) => o.kind === 'CustomResourceDefinition' && o.metadata.name === source.metadata.name);
      expect(rendered, file).toBeDefined();
      // kustomize adds the part-of labels; everything else is byte-for-byte the source.
      const { metadata: m1, ...rest1 } = rendered as K8sObject;
      const { metadata: m2, ...rest2 } = source;
      expect(rest1).toEqual(rest2);
      expect(m1.name).toBe(m2.name);
    }
  });

  it('mounts only the host paths each agent-pod container needs and no host namespaces', () => {
    const agent = podSpec(byKind('DaemonSet')[0] as K8sObject);
    const hostPaths = (agent?.volumes ?? []).flatMap((v) => (v.hostPath ? [v.hostPath.path] : [])).sort();
    expect(hostPaths).toEqual(['/dev/vfio', '/lib/modules', '/proc', '/sys', '/var/lib/kubelet/device-plugins', '/var/lib/kubelet/pod-resources', '/var/lib/vfio-handoff'].sort());
    const mountsOf = (name: string) => Object.fromEntries((agent?.containers.find((c) => c.name === name)?.volumeMounts ?? []).map((m) => [m.mountPath, m.readOnly === true]));
    expect(mountsOf('agent')).toEqual({
      '/host/sys': false,
      '/host/dev/vfio': false,
      '/host/proc': true,
      '/host/lib/modules': true,
      '/var/lib/kubelet/pod-resources': true,
      '/var/lib/vfio-handoff': false,
      '/run/vfio-handoff': false,
      '/var/run/secrets/kubernetes.io/serviceaccount': true,
    });
    // The gRPC server: every host path read-only except kubelet's socket directory; the names file read-only.
    expect(mountsOf('device-plugin')).toEqual({
      '/host/sys': true,
      '/host/dev/vfio': true,
      '/var/lib/kubelet/device-plugins': false,
      '/run/vfio-handoff': true,
    });
    expect(agent?.hostPID).toBeUndefined();
  });

  it('splits the agent pod: the privileged agent serves no gRPC, the device plugin has no privilege and no API token', () => {
    const agent = podSpec(byKind('DaemonSet')[0] as K8sObject)!;
    expect(agent.containers.map((c) => c.name)).toEqual(['agent', 'device-plugin']);
    const [engine, plugin] = agent.containers;
    expect(engine?.securityContext?.privileged).toBe(true);
    const engineArgs = engine?.args ?? [];
    expect(engineArgs[engineArgs.indexOf('--device-plugin') + 1]).toBe('off');
    const namesFile = engineArgs[engineArgs.indexOf('--resource-names-file') + 1];
    expect(namesFile).toBe('/run/vfio-handoff/resource-names.json');
    expect(engineArgs).not.toContain('--device-plugin-dir');

    expect(plugin?.args?.[0]).toBe('plugin');
    const pluginArgs = plugin?.args ?? [];
    expect(pluginArgs[pluginArgs.indexOf('--resource-names-file') + 1]).toBe(namesFile);
    expect(pluginArgs[pluginArgs.indexOf('--metrics-addr') + 1]).toBe(':9466');
    expect(plugin?.securityContext).toEqual({
      runAsUser: 0, // kubelet's device-plugins dir is root-owned 0750; without capabilities uid 0 overrides nothing
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    // Both containers mount the same emptyDir (not a host path) at the names file's directory.
    const shared = agent.volumes?.find((v) => v.name === 'resource-names');
    expect(shared?.emptyDir).toBeDefined();
    expect(shared?.hostPath).toBeUndefined();
    // The API token reaches the agent container only.
    expect(agent.automountServiceAccountToken).toBe(false);
    const token = agent.volumes?.find((v) => v.name === 'kube-api-access');
    expect(token?.projected?.sources.some((src) => 'serviceAccountToken' in src)).toBe(true);
    expect(engine?.volumeMounts?.some((m) => m.name === 'kube-api-access')).toBe(true);
    expect(plugin?.volumeMounts?.some((m) => m.name === 'kube-api-access')).toBe(false);
    for (const c of agent.containers) expect(c.env?.find((e) => e.name === 'NODE_OPTIONS')?.value, c.name).toBe('--max-semi-space-size=1');
  });

  it('scrapes both containers of the agent pod', () => {
    const svc = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'vfio-handoff-agent-metrics') as unknown as { spec: { ports: { name: string; port: number }[] } };
    expect(svc.spec.ports.map((p) => [p.name, p.port])).toEqual([['metrics', 9464], ['plugin-metrics', 9466]]);
    const sm = objects.find((o) => o.kind === 'ServiceMonitor' && o.metadata.name === 'vfio-handoff-agent') as unknown as { spec: { endpoints: { port: string }[] } };
    expect(sm.spec.endpoints.map((e) => e.port)).toEqual(['metrics', 'plugin-metrics']);
  });

  it('gives the agent read access plus its own NodeGpuPassthrough status, and nothing to write specs or nodes', () => {
    const rules = rulesOf(objects, 'ClusterRole', 'vfio-handoff-agent');
    expect(allows(rules, 'handoff.dev', 'nodegpupassthroughs', 'create')).toBe(true);
    expect(allows(rules, 'handoff.dev', 'nodegpupassthroughs/status', 'patch')).toBe(true);
    expect(allows(rules, 'handoff.dev', 'gpupassthroughs', 'watch')).toBe(true);
    expect(allows(rules, '', 'events', 'create')).toBe(true);
    for (const [group, resource, verb] of [
      ['handoff.dev', 'nodegpupassthroughs', 'update'],
      ['handoff.dev', 'nodegpupassthroughs', 'patch'],
      ['handoff.dev', 'nodegpupassthroughs', 'delete'],
      ['handoff.dev', 'gpupassthroughs', 'patch'],
      ['', 'nodes', 'patch'],
      ['', 'pods', 'get'],
    ] as const) {
      expect(allows(rules, group, resource, verb), `${resource} ${verb}`).toBe(false);
    }
  });

  it('gives the operator what reconciling needs and no pods at all', () => {
    const rules = rulesOf(objects, 'ClusterRole', 'vfio-handoff-operator');
    for (const [group, resource, verb] of [
      ['', 'nodes', 'patch'],
      ['handoff.dev', 'gpupassthroughs/status', 'patch'],
      ['handoff.dev', 'gpupassthroughs/finalizers', 'update'],
      ['handoff.dev', 'nodegpupassthroughs', 'patch'],
      ['kubevirt.io', 'kubevirts', 'update'],
      ['apiextensions.k8s.io', 'customresourcedefinitions', 'get'],
    ] as const) {
      expect(allows(rules, group, resource, verb), `${resource} ${verb}`).toBe(true);
    }
    expect(allows(rules, 'handoff.dev', 'nodegpupassthroughs/status', 'patch')).toBe(false);
    expect(allows(rules, 'apiextensions.k8s.io', 'customresourcedefinitions', 'update')).toBe(false);
    expect(rules.some((r) => (r.resources ?? []).some((x) => x.startsWith('pods')))).toBe(false);
    const lease = rulesOf(objects, 'Role', 'leader-election');
    expect(allows(lease, 'coordination.k8s.io', 'leases', 'update')).toBe(true);
  });

  it('labels the namespace for privileged pods and the monitoring objects for opt-out by selector', () => {
    const ns = byKind('Namespace')[0];
    expect(ns?.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('privileged');
    for (const o of objects.filter((x) => x.kind === 'ServiceMonitor' || x.kind === 'PrometheusRule')) {
      expect(o.metadata.labels?.['app.kubernetes.io/component']).toBe('monitoring');
    }
    expect(objects.filter((o) => o.kind !== 'ServiceMonitor' && o.kind !== 'PrometheusRule').every((o) => o.metadata.labels?.['app.kubernetes.io/component'] !== 'monitoring')).toBe(true);
  });

  it('renders the optional read-only plugin without privilege, API token or writable host mounts', () => {
    const plugin = kustomize('deploy/plugin');
    expect(plugin.map((o) => o.kind).sort()).toEqual(['DaemonSet', 'ServiceAccount']);
    expect(validateObjects(plugin, 'vfio-handoff')).toEqual([]);
    const spec = podSpec(plugin.find((o) => o.kind === 'DaemonSet') as K8sObject) as unknown as { automountServiceAccountToken: boolean; nodeSelector: Record<string, string> };
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(spec.nodeSelector['handoff.dev/mode']).toBe('plugin-only');
    // The agent stays off plugin-only nodes, so the two never both register a resource on one node.
    expect(JSON.stringify(podSpec(byKind('DaemonSet')[0] as K8sObject))).toContain('plugin-only');
  });
});

describe('shape checks catch bad manifests', () => {
  it.each([
    [['agent', '--host-root', '/host', '--privileged'], /--privileged is not a flag/],
    [['operator', '--metrics-addr'], /needs a value/],
    [['plugin', '--host-root', '/a', '--host-root', '/b'], /given twice/],
    [['daemon'], /unknown subcommand/],
  ])('rejects args %j', (args, problem) => {
    expect(checkArgs(args).join('\n')).toMatch(problem);
  });

  it('flags Secrets access, pods/exec, a privileged operator and a latest image', () => {
    const objects: K8sObject[] = [
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'x' }, rules: [{ apiGroups: [''], resources: ['secrets', 'pods/exec'], verbs: ['get'] }] } as K8sObject,
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'op', namespace: 'ns' },
        spec: {
          selector: { matchLabels: { a: 'b' } },
          template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'operator', image: 'repo/img:latest', args: ['operator'], securityContext: { privileged: true } }] } },
        },
      } as unknown as K8sObject,
    ];
    const problems = validateObjects(objects, 'ns').join('\n');
    expect(problems).toMatch(/grants Secrets/);
    expect(problems).toMatch(/grants pods\/exec/);
    expect(problems).toMatch(/only the agent may be privileged/);
    expect(problems).toMatch(/must be pinned/);
    expect(problems).toMatch(/must run as non-root/);
  });

  it('flags a device plugin that shares the agent pod\u2019s token or writes the host, and a split agent that still mounts the socket dir', () => {
    const pod = {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'a', namespace: 'ns' },
      spec: {
        selector: { matchLabels: { a: 'b' } },
        template: {
          metadata: { labels: { a: 'b' } },
          spec: {
            containers: [
              { name: 'agent', image: 'r/i:1', args: ['agent', '--device-plugin', 'off'], securityContext: { privileged: true }, volumeMounts: [{ name: 'dp', mountPath: '/var/lib/kubelet/device-plugins' }] },
              {
                name: 'device-plugin',
                image: 'r/i:1',
                args: ['plugin'],
                securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
                volumeMounts: [{ name: 'sys', mountPath: '/host/sys' }],
              },
            ],
            volumes: [{ name: 'dp', hostPath: { path: '/var/lib/kubelet/device-plugins' } }, { name: 'sys', hostPath: { path: '/sys' } }],
          },
        },
      },
    } as unknown as K8sObject;
    const problems = validateObjects([pod], 'ns').join('\n');
    expect(problems).toMatch(/device-plugin: host mount \/host\/sys must be read-only/);
    expect(problems).toMatch(/device-plugin: shares the pod's auto-mounted API token/);
    expect(problems).toMatch(/agent: --device-plugin off but mounts the device-plugins dir/);
  });
});

describe('the flags the manifests use exist in the built CLI', () => {
  const main = join(REPO_ROOT, 'dist/cli/main.js');
  // Starting the CLI (which loads client-node for `operator`) takes seconds on a busy machine.
  it.for(Object.keys(CLI_FLAGS))('%s --help lists every flag the manifests pass', { timeout: 60_000 }, (sub, ctx) => {
    if (!existsSync(main)) {
      // npm test builds first; only a bare `vitest run` outside CI may lack dist/.
      if (IN_CI) throw new Error('dist/cli/main.js is missing under CI=true: build before testing (npm test does)');
      return ctx.skip('dist/ not built (npm test builds it first)');
    }
    const r = spawnSync(process.execPath, [main, sub, '--help'], { encoding: 'utf8' });
    const out = `${r.stdout}${r.stderr}`;
    // A missing subcommand is the regression this test exists for: commander answers an unknown
    // subcommand's --help with the program's help, which lacks this usage line.
    expect(out, `vfio-handoff ${sub} --help`).toContain(`Usage: vfio-handoff ${sub}`);
    expect(r.status, out).toBe(0);
    for (const flag of Object.keys(CLI_FLAGS[sub] ?? {})) expect(out, `${sub} ${flag}`).toContain(flag);
  });
});
