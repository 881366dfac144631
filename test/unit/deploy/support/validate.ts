/**
 * Shape checks shared by the kustomize and Helm render tests. Each returns a list of problems (empty = fine),
 * so a failing test names every problem at once.
 */
import { parseAllDocuments } from 'yaml';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

export function parseObjects(text: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`YAML error: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    out.push(value as K8sObject);
  }
  return out;
}

/** The CLI contract: flags each subcommand accepts; `true` = takes a value. */
export const CLI_FLAGS: Record<string, Record<string, boolean>> = {
  agent: {
    '--host-root': true,
    '--state-dir': true,
    '--device-plugin-dir': true,
    '--pod-resources-socket': true,
    '--metrics-addr': true,
    '--node-name': true,
    '--device-plugin': true,
    '--resource-names-file': true,
    '--front-end': true,
    '--plugin-registry-dir': true,
    '--dra-plugin-dir': true,
    '--cdi-dir': true,
    '--allow-boot-gpu': false,
    '--keep-on-vfio': false,
    '--cdi': false,
  },
  plugin: { '--host-root': true, '--device-plugin-dir': true, '--metrics-addr': true, '--resource-names-file': true, '--resource-names-wait': true, '--cdi': false, '--cdi-dir': true },
  operator: { '--metrics-addr': true, '--leader-elect': false, '--lease-namespace': true },
};

const CLUSTER_SCOPED = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding', 'GpuPassthrough', 'NodeGpuPassthrough', 'DeviceClass', 'ResourceSlice']);

interface Container {
  name: string;
  image: string;
  args?: string[];
  securityContext?: {
    privileged?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    readOnlyRootFilesystem?: boolean;
    runAsNonRoot?: boolean;
    runAsUser?: number;
    seccompProfile?: { type: string };
  };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  ports?: { name: string; containerPort: number }[];
  env?: { name: string; value?: string }[];
}
export interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; hostPath?: { path: string; type?: string }; emptyDir?: object; projected?: { sources: Record<string, unknown>[] } }[];
  automountServiceAccountToken?: boolean;
  hostPID?: boolean;
  hostNetwork?: boolean;
  hostIPC?: boolean;
  serviceAccountName?: string;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
}

export function podSpec(o: K8sObject): PodSpec | undefined {
  if (o.kind !== 'Deployment' && o.kind !== 'DaemonSet') return undefined;
  return (o as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
}

export function podLabels(o: K8sObject): Record<string, string> {
  return (o as unknown as { spec: { template: { metadata: { labels: Record<string, string> } } } }).spec.template.metadata.labels;
}

/** Checks args against the CLI contract; returns problems. */
export function checkArgs(args: readonly string[]): string[] {
  const [sub, ...rest] = args;
  const flags = sub === undefined ? undefined : CLI_FLAGS[sub];
  if (!flags) return [`unknown subcommand ${String(sub)}`];
  const problems: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i] ?? '';
    const takesValue = flags[a];
    if (takesValue === undefined) {
      problems.push(`${sub}: ${a} is not a flag of our CLI`);
      continue;
    }
    if (seen.has(a)) problems.push(`${sub}: ${a} given twice`);
    seen.add(a);
    if (takesValue) {
      const v = rest[i + 1];
      if (v === undefined || v.startsWith('--')) problems.push(`${sub}: ${a} needs a value`);
      i++;
    }
  }
  return problems;
}

/** Validates a rendered set of objects; `namespace` is where namespaced objects must land. */
export function validateObjects(objects: readonly K8sObject[], namespace: string): string[] {
  const problems: string[] = [];
  const keys = new Set<string>();
  for (const o of objects) {
    const id = `${o.kind ?? '?'}/${o.metadata?.name ?? '?'}`;
    if (typeof o.apiVersion !== 'string' || o.apiVersion === '') problems.push(`${id}: no apiVersion`);
    if (typeof o.kind !== 'string' || o.kind === '') problems.push(`${id}: no kind`);
    if (typeof o.metadata?.name !== 'string' || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(o.metadata.name) || o.metadata.name.length > 253) {
      problems.push(`${id}: bad metadata.name`);
    }
    const key = `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
    if (keys.has(key)) problems.push(`${id}: duplicate object`);
    keys.add(key);
    if (!CLUSTER_SCOPED.has(o.kind) && o.metadata?.namespace !== namespace) problems.push(`${id}: namespace ${String(o.metadata?.namespace)} != ${namespace}`);
    // kustomize v5.5's built-in schema predates ValidatingAdmissionPolicy and gives it the namespace; the API
    // server drops a namespace on a cluster-scoped create (test/peers/control-plane shows it accepted).
    if (CLUSTER_SCOPED.has(o.kind) && o.metadata?.namespace !== undefined && !o.kind.startsWith('ValidatingAdmissionPolicy')) problems.push(`${id}: cluster-scoped object has a namespace`);

    const spec = podSpec(o);
    if (spec) {
      if (spec.hostPID || spec.hostNetwork || spec.hostIPC) problems.push(`${id}: uses host namespaces`);
      const sel = (o as unknown as { spec: { selector: { matchLabels: Record<string, string> } } }).spec.selector.matchLabels;
      const labels = podLabels(o);
      for (const [k, v] of Object.entries(sel)) if (labels[k] !== v) problems.push(`${id}: selector ${k}=${v} does not match the pod labels`);
      const sa = spec.serviceAccountName;
      if (sa && !objects.some((x) => x.kind === 'ServiceAccount' && x.metadata.name === sa)) problems.push(`${id}: service account ${sa} not rendered`);
      const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
      for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
        const cid = `${id}/${c.name}`;
        if (!/^[^:@]+(:[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[a-f0-9]{64})$/.test(c.image) || /:latest$/.test(c.image)) problems.push(`${cid}: image ${c.image} must be pinned (no latest)`);
        problems.push(...checkArgs(c.args ?? []).map((p) => `${cid}: ${p}`));
        for (const m of c.volumeMounts ?? []) if (!volumes.has(m.name)) problems.push(`${cid}: mount ${m.name} has no volume`);
        const sc = c.securityContext ?? {};
        const sub = c.args?.[0];
        if (sub === 'agent') {
          // Writes sysfs: the one privileged container.
          if (sc.privileged !== true) problems.push(`${cid}: the agent must be privileged to write sysfs`);
        } else {
          if (sc.privileged) problems.push(`${cid}: only the agent may be privileged`);
          if (sc.allowPrivilegeEscalation !== false) problems.push(`${cid}: allowPrivilegeEscalation must be false`);
          if (!(sc.capabilities?.drop ?? []).includes('ALL')) problems.push(`${cid}: must drop ALL capabilities`);
          if ((sc.capabilities?.add ?? []).length > 0) problems.push(`${cid}: adds capabilities`);
          if (sc.readOnlyRootFilesystem !== true) problems.push(`${cid}: root filesystem must be read-only`);
        }
        if (sub === 'operator') {
          const nonRoot = sc.runAsNonRoot ?? spec.securityContext?.runAsNonRoot;
          const uid = sc.runAsUser ?? spec.securityContext?.runAsUser;
          if (nonRoot !== true || uid === 0) problems.push(`${cid}: the operator must run as non-root`);
          if ((spec.volumes ?? []).some((v) => v.hostPath)) problems.push(`${cid}: the operator must not mount host paths`);
        }
        if (sub === 'plugin') {
          for (const m of c.volumeMounts ?? []) {
            if (m.mountPath.startsWith('/host/') && m.readOnly !== true) problems.push(`${cid}: host mount ${m.mountPath} must be read-only`);
          }
          // Issue 6: the process serving gRPC must hold no API credentials either.
          if (spec.containers.length > 1 && spec.automountServiceAccountToken !== false) problems.push(`${cid}: shares the pod's auto-mounted API token`);
          if ((c.volumeMounts ?? []).some((m) => m.mountPath.startsWith('/var/run/secrets/kubernetes.io'))) problems.push(`${cid}: mounts an API token`);
        }
        if (sub === 'agent' && (c.args ?? []).join(' ').includes('--device-plugin off')) {
          // Split mode: the privileged agent must not serve kubelet's socket itself.
          if ((c.volumeMounts ?? []).some((m) => m.mountPath.endsWith('/device-plugins'))) problems.push(`${cid}: --device-plugin off but mounts the device-plugins dir`);
        }
      }
    }

    if (o.kind === 'ClusterRole' || o.kind === 'Role') {
      const rules = (o as unknown as { rules?: { apiGroups?: string[]; resources?: string[]; verbs?: string[]; nonResourceURLs?: string[] }[] }).rules ?? [];
      for (const r of rules) {
        const resources = r.resources ?? [];
        if (resources.includes('*') || (r.verbs ?? []).includes('*') || (r.apiGroups ?? []).includes('*')) problems.push(`${id}: wildcard rule`);
        if (resources.some((x) => x === 'secrets' || x.startsWith('secrets/'))) problems.push(`${id}: grants Secrets`);
        if (resources.some((x) => x === 'pods/exec' || x === 'pods/attach' || x === 'pods/portforward')) problems.push(`${id}: grants pods/exec`);
        if ((r.verbs ?? []).some((v) => v === 'escalate' || v === 'bind' || v === 'impersonate')) problems.push(`${id}: grants ${r.verbs?.join(',')}`);
        if (r.nonResourceURLs) problems.push(`${id}: non-resource URLs`);
      }
    }
    if (o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding') {
      const b = o as unknown as { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace?: string }[] };
      if (!objects.some((x) => x.kind === b.roleRef.kind && x.metadata.name === b.roleRef.name)) problems.push(`${id}: roleRef ${b.roleRef.name} not rendered`);
      for (const s of b.subjects) {
        if (s.kind !== 'ServiceAccount') problems.push(`${id}: binds a non-ServiceAccount subject`);
        if (!objects.some((x) => x.kind === 'ServiceAccount' && x.metadata.name === s.name && x.metadata.namespace === s.namespace)) problems.push(`${id}: subject ${s.name} not rendered in ${String(s.namespace)}`);
      }
    }
    if (o.kind === 'Service') {
      const s = o as unknown as { spec: { selector: Record<string, string>; ports: { name: string; targetPort: string | number }[] } };
      const pods = objects.filter((x) => podSpec(x) && Object.entries(s.spec.selector).every(([k, v]) => podLabels(x)[k] === v));
      if (pods.length !== 1) problems.push(`${id}: selects ${pods.length} workloads, expected 1`);
      for (const p of s.spec.ports) {
        const named = pods.some((w) => podSpec(w)?.containers.some((c) => (c.ports ?? []).some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort)));
        if (!named) problems.push(`${id}: targetPort ${String(p.targetPort)} is no container port`);
      }
    }
    if (o.kind === 'NetworkPolicy') {
      // It must select exactly one workload, and every port it opens must be a container port of it.
      const np = o as unknown as { spec: { podSelector: { matchLabels: Record<string, string> }; ingress?: { ports?: { port: number | string }[] }[] } };
      const pods = objects.filter((x) => podSpec(x) && Object.entries(np.spec.podSelector.matchLabels).every(([k, v]) => podLabels(x)[k] === v));
      if (pods.length !== 1) problems.push(`${id}: selects ${pods.length} workloads, expected 1`);
      const containerPorts = pods.flatMap((w) => podSpec(w)?.containers.flatMap((c) => (c.ports ?? []).flatMap((cp) => [cp.containerPort, cp.name])) ?? []);
      for (const rule of np.spec.ingress ?? []) {
        for (const p of rule.ports ?? []) if (!containerPorts.includes(p.port as never)) problems.push(`${id}: port ${String(p.port)} is no container port`);
      }
      // Every container port must be opened, or Prometheus (or the probe on some CNIs) is cut off.
      const opened = (np.spec.ingress ?? []).flatMap((r) => (r.ports ?? []).map((p) => p.port));
      for (const w of pods) {
        for (const c of podSpec(w)?.containers ?? []) for (const cp of c.ports ?? []) if (!opened.includes(cp.containerPort) && !opened.includes(cp.name as never)) problems.push(`${id}: container port ${cp.containerPort} not opened`);
      }
    }
    if (o.kind === 'ServiceMonitor') {
      const sm = o as unknown as { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] } };
      const services = objects.filter(
        (x) => x.kind === 'Service' && Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => x.metadata.labels?.[k] === v),
      );
      if (services.length !== 1) problems.push(`${id}: selects ${services.length} Services, expected 1`);
      for (const e of sm.spec.endpoints) {
        const ok = services.some((svc) => (svc as unknown as { spec: { ports: { name: string }[] } }).spec.ports.some((p) => p.name === e.port));
        if (!ok) problems.push(`${id}: endpoint port ${e.port} not on the Service`);
      }
    }
  }
  return problems;
}

export interface RbacRule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
}

/** Whether a role's rules allow verb on group/resource. */
export function allows(rules: readonly RbacRule[], group: string, resource: string, verb: string): boolean {
  return rules.some((r) => (r.apiGroups ?? []).includes(group) && (r.resources ?? []).includes(resource) && (r.verbs ?? []).includes(verb));
}

export function rulesOf(objects: readonly K8sObject[], kind: 'ClusterRole' | 'Role', nameSuffix: string): RbacRule[] {
  const role = objects.find((o) => o.kind === kind && o.metadata.name.endsWith(nameSuffix));
  if (!role) throw new Error(`${kind} *${nameSuffix} not rendered`);
  return (role as unknown as { rules: RbacRule[] }).rules;
}
