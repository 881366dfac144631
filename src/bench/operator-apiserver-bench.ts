import { fork, type ChildProcess } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { realClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { ClientNodeKubeApi } from '../kube/index.js';
import { GPU_PASSTHROUGH_REF } from '../api/v1alpha1/index.js';
import { SimulatedAgents } from '../testing/simulated-agents.js';
import { ControlPlane } from '../testing/control-plane.js';
import { CHILD_FLAG, inventoryOf, nextMessage, type MemoryReport } from './operator-bench.js';

/**
 * The operator benchmark of operator-bench.ts on a real kube-apiserver + etcd (test/peers/kube, built by
 * scripts/build-peers.mjs): 1,000 nodes × 8 GPUs whose simulated agents (as cluster admin) have reported
 * their inventories; the operator runs alone in a child process as its own ServiceAccount with the RBAC
 * of deploy/operator/rbac.yaml. One GpuPassthrough selecting every node is created.
 * Measured: time until the policy is Ready and every node labelled; the operator's writes per node (from
 * the API server's audit log: create/update/patch by the operator on each node and its NodeGpuPassthrough);
 * requests the API server served during convergence (apiserver_request_total, all clients, and the
 * operator's alone from the audit log); operator peak RSS. Goals: ≤ 30 s, ≤ 3 writes per node, ≤ 300 MiB.
 * Without Go the result says why it was skipped.
 */

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MiB = 1024 * 1024;
const NS = 'vfio-handoff';
const OPERATOR = `system:serviceaccount:${NS}:vfio-handoff-operator`;

export interface OperatorApiserverBenchOptions {
  nodes?: number;
  gpusPerNode?: number;
  timeoutMs?: number;
}

interface BuildPeers {
  goVersion(): { version?: string; reason?: string };
  buildPeer(module: string, opts?: { log?: (line: string) => void }): Promise<{ dir: string }>;
}

async function binaries(): Promise<{ etcd: string; apiserver: string } | { skipped: string }> {
  const lib = (await import(pathToFileURL(join(REPO_ROOT, 'scripts/build-peers.mjs')).href)) as BuildPeers;
  const go = lib.goVersion();
  if (go.reason) return { skipped: go.reason };
  const { dir } = await lib.buildPeer('kube');
  return { etcd: join(dir, 'etcd'), apiserver: join(dir, 'kube-apiserver') };
}

async function pool<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++] as T);
  }));
}

/** Sum of apiserver_request_total (every verb, resource and code). */
function requestTotal(metrics: string): number {
  let total = 0;
  for (const line of metrics.split('\n')) if (line.startsWith('apiserver_request_total{')) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  return total;
}

const AUDIT_POLICY = {
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [
    { level: 'Metadata', users: [OPERATOR] },
    { level: 'None' },
  ],
};

export async function runOperatorApiserverBench(opts: OperatorApiserverBenchOptions = {}): Promise<Record<string, number | string>> {
  const nodes = opts.nodes ?? Number(process.env['OPERATOR_BENCH_NODES'] ?? 1000);
  const gpus = opts.gpusPerNode ?? 8;
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const out: Record<string, number | string> = { 'apiserver.nodes': nodes, 'apiserver.gpus_per_node': gpus };
  const bins = await binaries();
  if ('skipped' in bins) return { ...out, 'apiserver.skipped': bins.skipped };

  const tStart = performance.now();
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const work = mkdtempSync(join(tmpdir(), 'vh-apiserver-bench-'));
  await writeFile(join(work, 'audit-policy.json'), JSON.stringify(AUDIT_POLICY));
  const auditLog = join(work, 'audit.log');
  const cp = await ControlPlane.start(bins, {
    extraArgs: [`--audit-policy-file=${join(work, 'audit-policy.json')}`, `--audit-log-path=${auditLog}`, '--audit-log-format=json', '--audit-log-mode=batch'],
  });
  out['apiserver.start_s'] = Math.round((performance.now() - tStart) / 100) / 10;
  const stop = new AbortController();
  let child: ChildProcess | undefined;
  let agents: SimulatedAgents | undefined;
  try {
    // What the operator needs from deploy/: the namespace, the CRDs, its ServiceAccount and RBAC.
    const docs: Record<string, unknown>[] = [];
    for (const f of ['namespace.yaml', 'operator/serviceaccount.yaml', 'operator/rbac.yaml']) {
      for (const d of (await readFile(join(REPO_ROOT, 'deploy', f), 'utf8')).split(/^---$/m)) if (d.trim()) docs.push(parse(d) as Record<string, unknown>);
    }
    for (const f of await readdir(join(REPO_ROOT, 'deploy/crds'))) docs.push(parse(await readFile(join(REPO_ROOT, 'deploy/crds', f), 'utf8')) as Record<string, unknown>);
    for (const d of docs) {
      const kind = d['kind'] as string;
      const name = (d['metadata'] as { name: string }).name;
      const path = {
        Namespace: `/api/v1/namespaces/${name}`,
        ServiceAccount: `/api/v1/namespaces/${NS}/serviceaccounts/${name}`,
        ClusterRole: `/apis/rbac.authorization.k8s.io/v1/clusterroles/${name}`,
        ClusterRoleBinding: `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${name}`,
        Role: `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles/${name}`,
        RoleBinding: `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings/${name}`,
        CustomResourceDefinition: `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
      }[kind];
      if (!path) throw new Error(`operator-apiserver-bench: unexpected ${kind} in deploy/`);
      const r = await cp.apply(path, d, { fieldManager: 'bench', force: true });
      if (r.status >= 300) throw new Error(`${kind}/${name}: ${r.text}`);
      if (kind === 'CustomResourceDefinition') await cp.waitEstablished(name);
    }
    const names = Array.from({ length: nodes }, (_, i) => `node-${String(i).padStart(4, '0')}`);
    const inventory = inventoryOf(gpus);
    const tSeed = performance.now();
    await pool(names, 16, async (name) => {
      await cp.ok('POST', '/api/v1/nodes', { body: { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'example.com/gpu': 'h100' } } } });
      const created = await cp.ok<Record<string, unknown>>('POST', '/apis/handoff.dev/v1alpha1/nodegpupassthroughs', {
        body: { apiVersion: 'handoff.dev/v1alpha1', kind: 'NodeGpuPassthrough', metadata: { name }, spec: { gpus: [], paused: false } },
      });
      await cp.ok('PUT', `/apis/handoff.dev/v1alpha1/nodegpupassthroughs/${name}/status`, { body: { ...created, status: { observedGeneration: 1, inventory, gpus: [] } } });
    });
    out['apiserver.seed_s'] = Math.round((performance.now() - tSeed) / 100) / 10;

    // The simulated agents answer spec changes as cluster admin (the agents' own path is in test/peers).
    const adminConfig = new KubeConfig();
    adminConfig.loadFromOptions({
      clusters: [{ name: 'peers', server: cp.url, caFile: cp.caFile }],
      users: [{ name: 'admin', token: cp.adminToken }],
      contexts: [{ name: 'peers', cluster: 'peers', user: 'admin' }],
      currentContext: 'peers',
    });
    const api = new ClientNodeKubeApi({ kubeConfig: adminConfig });
    agents = new SimulatedAgents({ api, kubeConfig: adminConfig, clock: realClock, logger: silentLogger });
    for (const name of names) agents.register(name, inventory);
    await agents.start(stop.signal);

    const operatorToken = await cp.serviceAccountToken(NS, 'vfio-handoff-operator');
    const tSync = performance.now();
    const childJs = import.meta.url.endsWith('.js') ? fileURLToPath(new URL('./operator-bench.js', import.meta.url)) : join(REPO_ROOT, 'dist/bench/operator-bench.js');
    child = fork(childJs, [CHILD_FLAG, cp.url, operatorToken, cp.caFile], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await nextMessage(child, 'ready');
    out['apiserver.operator_cache_sync_ms'] = Math.round(performance.now() - tSync);
    await realClock.sleep(1000); // the start-up pass over every node key (nothing to write yet)
    const auditBefore = (await readFile(auditLog, 'utf8').catch(() => '')).length;
    const requestsBefore = requestTotal(await cp.metrics());

    const t0 = performance.now();
    await api.create(GPU_PASSTHROUGH_REF, {
      metadata: { name: 'h100' },
      spec: { nodeSelector: { matchLabels: { 'example.com/gpu': 'h100' } }, resourceName: 'example.com/h100' },
    } as never);
    let lastReport = t0;
    for (;;) {
      await realClock.sleep(250);
      const p = await cp.ok<{ status?: { nodesReady?: number; conditions?: { type: string; status: string }[] } }>('GET', '/apis/handoff.dev/v1alpha1/gpupassthroughs/h100');
      const ready = p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') && p.status.nodesReady === nodes;
      const timedOut = performance.now() - t0 > timeoutMs;
      if (ready || timedOut || performance.now() - lastReport > 15_000) {
        lastReport = performance.now();
        const labelled = (await cp.ok<{ items: unknown[] }>('GET', '/api/v1/nodes?labelSelector=handoff.dev%2Fpassthrough-ready%3Dtrue')).items.length;
        if (ready && labelled === nodes) break;
        const progress = `${Math.round((performance.now() - t0) / 1000)} s: policy nodesReady ${p.status?.nodesReady ?? 0}/${nodes}, ${labelled} nodes labelled, agent status writes ${agents.statusWrites}, API requests ${requestTotal(await cp.metrics()) - requestsBefore}`;
        if (timedOut) throw new Error(`operator did not converge on the real API server within ${timeoutMs} ms: ${progress}`);
        process.stderr.write(`  operator-apiserver-bench: ${progress}\n`);
      }
    }
    const converged = performance.now() - t0;
    out['apiserver.converge_s'] = Math.round(converged / 10) / 100;
    // The benchmark's own polling is in this figure too (≈ 2 requests per 250 ms).
    out['apiserver.requests_served'] = requestTotal(await cp.metrics()) - requestsBefore;

    await realClock.sleep(1500); // the audit log's batch flush
    const perNode = new Map<string, number>();
    let operatorRequests = 0;
    let failed = 0;
    let events = 0;
    let policyWrites = 0;
    for (const line of (await readFile(auditLog, 'utf8')).slice(auditBefore).split('\n')) {
      if (!line.startsWith('{')) continue;
      const e = JSON.parse(line) as { stage: string; verb: string; objectRef?: { resource?: string; name?: string; subresource?: string }; responseStatus?: { code?: number } };
      if (e.stage !== 'ResponseComplete') continue;
      operatorRequests++;
      if (!['create', 'update', 'patch', 'delete'].includes(e.verb)) continue;
      if ((e.responseStatus?.code ?? 0) >= 400) failed++;
      const res = e.objectRef?.resource;
      if ((res === 'nodes' || res === 'nodegpupassthroughs') && !e.objectRef?.subresource && e.objectRef?.name) perNode.set(e.objectRef.name, (perNode.get(e.objectRef.name) ?? 0) + 1);
      else if (res === 'gpupassthroughs') policyWrites++;
      else if (res === 'events') events++;
    }
    const counts = [...perNode.values()];
    out['apiserver.operator_requests'] = operatorRequests;
    out['apiserver.writes_per_node_avg'] = Math.round((counts.reduce((a, b) => a + b, 0) / nodes) * 100) / 100;
    out['apiserver.writes_per_node_max'] = Math.max(0, ...counts);
    out['apiserver.policy_writes'] = policyWrites;
    out['apiserver.event_writes'] = events;
    out['apiserver.failed_writes'] = failed;
    out['apiserver.agent_status_writes'] = agents.statusWrites;
    child.send({ type: 'memory' });
    const m = await nextMessage<MemoryReport>(child, 'memory');
    out['apiserver.operator_rss_mib_peak'] = Math.round(m.peakRss / MiB);
    out['apiserver.operator_heap_used_mib_after_gc'] = Math.round(m.heapUsed / MiB);
    out['apiserver.goal'] = converged <= 30_000 && Math.max(0, ...counts) <= 3 && m.peakRss <= 300 * MiB ? 'met' : 'missed';
    return out;
  } finally {
    stop.abort();
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child?.once('exit', r));
      child.send({ type: 'stop' });
      await Promise.race([exited, realClock.sleep(5_000).then(() => child?.kill('SIGKILL'))]);
    }
    await agents?.stop();
    await cp.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
