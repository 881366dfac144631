/**
 * kube-apiserver restarted under a running operator and agents (issue 17): etcd keeps running, the API
 * server stops, stays down for a while and comes back on the same port with the same serving certificate
 * and ServiceAccount keys — what a control-plane upgrade or a crash-looping API server does to a cluster.
 *
 * Each process reaches the API server through its own counting TCP proxy (a load balancer in front of
 * the API server, as in most clusters): every TCP connection a process opens is counted. While the API
 * server is down the proxy resets each connection at once, so every request attempt is one connection.
 *
 * The bound is the one test/integration/faults/api-faults.test.ts uses, from client-go's reflector
 * backoff (800 ms doubling to 30 s, jittered): at most ~5 list+watch cycles per watched resource in an
 * 8 s window, times three for slack — the agent ≤ 30 attempts per window, the operator (three informers,
 * plus its Lease) ≤ 90. A client that retries without backoff makes hundreds a second and exceeds it by
 * orders of magnitude; the assertion counts requests, it times nothing.
 */
import type * as grpc from '@grpc/grpc-js';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ControlPlane, controlPlaneBinaries } from '../../support/control-plane.js';
import { startPodResources } from '../../integration/agent/support.js';
import type { Obj } from './support.js';
import { CLI, Discovery, GPT, H100, NGP, NS, deployToolsMissing, kustomize, processLogs, startCli, until, type CliProcess } from './support.js';

const bins = controlPlaneBinaries();
const skip = bins.skip ?? deployToolsMissing();
const WINDOW_S = 8;
const AGENT_BOUND = 30; // connection attempts per window
const OPERATOR_BOUND = 90;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Condition { type: string; status: string }
interface Policy extends Obj { status?: { conditions?: Condition[]; nodesMatched?: number; nodesReady?: number; gpusReady?: number } }
interface NodeState extends Obj { spec?: { gpus?: { address: string }[] }; status?: { gpus?: { address: string; phase: string }[] } }

/** A TCP proxy to 127.0.0.1:`upstream` that counts the connections clients open through it. */
class CountingProxy {
  connections = 0;
  private readonly sockets = new Set<Socket>();
  private constructor(private readonly server: Server, readonly port: number) {}

  static async start(upstream: number): Promise<CountingProxy> {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    if (typeof addr !== 'object' || !addr) throw new Error('proxy has no port');
    const proxy = new CountingProxy(server, addr.port);
    server.on('connection', (client) => {
      proxy.connections++;
      proxy.sockets.add(client);
      const up = connect(upstream, '127.0.0.1');
      proxy.sockets.add(up);
      // API server down: the client sees a reset, as from a load balancer with no healthy backend.
      up.on('error', () => (client.destroyed ? undefined : client.resetAndDestroy()));
      client.on('error', () => up.destroy());
      client.on('close', () => { proxy.sockets.delete(client); up.destroy(); });
      up.on('close', () => { proxy.sockets.delete(up); client.destroy(); });
      client.pipe(up);
      up.pipe(client);
    });
    return proxy;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

interface Proc extends CliProcess {
  readonly proxy: CountingProxy;
}

const AGENTS = [
  { node: 'node-a', client: 'light' },
  { node: 'node-b', client: 'client-node' },
] as const;

describe.skipIf(skip)(`kube-apiserver restarted under running operator and agents${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let cp: ControlPlane;
  let dir: string;
  const procs: Proc[] = [];
  const podResources: grpc.Server[] = [];

  /** A kubeconfig whose server is `proxy`: the API server's certificate names 127.0.0.1, not a port. */
  function kubeconfig(name: string, token: string, proxy: CountingProxy): string {
    const file = join(dir, `${name}.kubeconfig`);
    writeFileSync(file, stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'peers', cluster: { server: `https://127.0.0.1:${proxy.port}`, 'certificate-authority': cp.caFile } }],
      users: [{ name, user: { token } }],
      contexts: [{ name, context: { cluster: 'peers', user: name } }],
      'current-context': name,
    }));
    return file;
  }

  function start(name: string, proxy: CountingProxy, args: string[], env: Record<string, string> = {}): Proc {
    const p: Proc = { ...startCli(CLI, name, args, env), proxy };
    procs.push(p);
    return p;
  }
  const logs = (): string => processLogs(procs);
  const policy = async (name: string): Promise<Policy | undefined> => {
    const r = await cp.request<Policy>('GET', `${GPT}/${name}`);
    return r.status === 200 ? r.body : undefined;
  };
  const ready = (p: Policy | undefined): boolean => p?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
  const phase = async (node: string, address: string): Promise<string | undefined> =>
    (await cp.ok<NodeState>('GET', `${NGP}/${node}`)).status?.gpus?.find((g) => g.address === address)?.phase;

  beforeAll(async () => {
    if (skip || bins.skip !== undefined) return;
    if (!existsSync(CLI)) throw new Error('dist/cli/main.js missing: npm test builds first');
    dir = mkdtempSync(join(tmpdir(), 'vh-peers-restart-'));
    cp = await ControlPlane.start(bins);
    const apiPort = Number(new URL(cp.url).port);
    const discovery = new Discovery(cp);
    const objects = kustomize('deploy').filter((o) => !o.apiVersion.startsWith('monitoring.coreos.com'));
    for (const o of objects.filter((x) => x.kind === 'Namespace' || x.kind === 'CustomResourceDefinition')) await cp.apply(await discovery.path(o), o);
    for (const o of objects.filter((x) => x.kind === 'CustomResourceDefinition')) await cp.waitEstablished(o.metadata.name);
    for (const o of objects.filter((x) => x.kind !== 'Namespace' && x.kind !== 'CustomResourceDefinition')) {
      const r = await cp.apply(await discovery.path(o), o);
      if (r.status >= 300) throw new Error(`${o.kind}/${o.metadata.name}: ${r.text}`);
    }
    for (const a of AGENTS) {
      await cp.ok('POST', '/api/v1/nodes', { body: { apiVersion: 'v1', kind: 'Node', metadata: { name: a.node, labels: { gpu: 'yes' } } } });
      const proxy = await CountingProxy.start(apiPort);
      const socket = join(dir, `${a.node}-pod-resources.sock`);
      podResources.push(await startPodResources(socket, () => []));
      start(`agent ${a.node} (${a.client})`, proxy, [
        'agent', '--profile', 'server-aspeed-4xh100', '--node-name', a.node, '--kubeconfig', kubeconfig(a.node, await cp.podBoundToken(NS, 'vfio-handoff-agent', a.node), proxy),
        '--kube-client', a.client, '--device-plugin', 'off', '--resource-names-file', join(dir, `${a.node}-names.json`), '--pod-resources-socket', socket,
        '--state-dir', join(dir, `${a.node}-state`), '--metrics-addr', '127.0.0.1:0', '--resync-interval', '10m', '--log-level', 'info',
      ]);
    }
    const opProxy = await CountingProxy.start(apiPort);
    start('operator', opProxy, [
      'operator', '--kubeconfig', kubeconfig('operator', await cp.serviceAccountToken(NS, 'vfio-handoff-operator'), opProxy),
      '--metrics-addr', '127.0.0.1:0', '--lease-namespace', NS, '--resync', '30', '--log-level', 'info',
    ], { POD_NAME: 'op-1' });
    await cp.ok('POST', GPT, { body: { apiVersion: 'handoff.dev/v1alpha1', kind: 'GpuPassthrough', metadata: { name: 'gpus' }, spec: { nodeSelector: { matchLabels: { gpu: 'yes' } }, gpus: { addresses: [H100[0]] }, resourceName: 'example.com/h100' } } });
    await until(`policy Ready before the restart\n${logs()}`, async () => {
      const p = await policy('gpus');
      return ready(p) && p?.status?.gpusReady === 2;
    }, 180_000);
  }, 400_000);

  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    for (const s of podResources) s.forceShutdown();
    for (const p of procs) await p.proxy.close();
    await cp?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('requests during the outage stay within the backoff bound; afterwards a spec change and a node change converge', async () => {
    const counts = (): number[] => procs.map((p) => p.proxy.connections);
    const diff = (a: number[], b: number[]): Record<string, number> => Object.fromEntries(procs.map((p, i) => [p.name, (b[i] ?? 0) - (a[i] ?? 0)]));

    const down0 = counts();
    const t0 = Date.now();
    await cp.stopApiserver();
    // Let requests in flight at the stop fail, then count a window from a clean slate.
    await sleep(1000);
    const w0 = counts();
    await sleep(WINDOW_S * 1000);
    const window = diff(w0, counts());
    await cp.startApiserver();
    const outageS = (Date.now() - t0) / 1000;
    const outage = diff(down0, counts());
    console.log(`kube-apiserver restart: outage ${outageS.toFixed(1)} s; connections in a ${WINDOW_S} s window ${JSON.stringify(window)}; over the whole outage ${JSON.stringify(outage)}`);

    for (const p of procs) {
      const bound = p.name === 'operator' ? OPERATOR_BOUND : AGENT_BOUND;
      expect(window[p.name], `${p.name} in the window`).toBeLessThanOrEqual(bound);
      // The same rate over the whole outage (start-up of the API server included).
      expect(outage[p.name], `${p.name} over the outage`).toBeLessThanOrEqual(bound * Math.ceil(outageS / WINDOW_S));
      // They did keep trying (the counter sees them): a process that gave up would not recover below.
      expect(outage[p.name], `${p.name} retried`).toBeGreaterThan(0);
      expect(p.child.exitCode ?? p.child.signalCode, `${p.name} still running\n${logs()}`).toBeNull();
    }

    // (1) A spec change after the restart reaches the operator, then both agents, then their status.
    const up = Date.now();
    const p = await policy('gpus');
    await cp.ok('PUT', `${GPT}/gpus`, { body: { ...p, spec: { ...(p?.['spec'] as object), gpus: { addresses: [H100[0], H100[1]] } } } });
    await until(`spec change converged after the restart\n${logs()}`, async () => {
      const pol = await policy('gpus');
      return ready(pol) && pol?.status?.gpusReady === 4 && (await phase('node-a', H100[1])) === 'Ready' && (await phase('node-b', H100[1])) === 'Ready';
    }, 180_000);
    const specS = (Date.now() - up) / 1000;

    // (2) A node change: a new matching node (no agent) shows up in the policy's status.
    await cp.ok('POST', '/api/v1/nodes', { body: { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-d', labels: { gpu: 'yes' } } } });
    await until(`operator saw the new node\n${logs()}`, async () => (await policy('gpus'))?.status?.nodesMatched === 3, 180_000);
    console.log(`kube-apiserver restart: spec change converged ${specS.toFixed(1)} s after the API server was ready; new node in status ${((Date.now() - up) / 1000).toFixed(1)} s after`);
  }, 600_000);
});
