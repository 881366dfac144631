/**
 * A real Kubernetes control plane on loopback for the `peers` tests and the operator benchmark: etcd +
 * kube-apiserver built by scripts/build-peers.mjs from test/peers/kube (k8s.io/kubernetes v1.34.4), on
 * free ports, in a temp dir, killed by stop(). RBAC authorization, ServiceAccount token authentication (our own signing key,
 * issuer https://kubernetes.default.svc.cluster.local) and the ValidatingAdmissionPolicy plugin are on.
 * The test itself acts as a cluster admin through a static token (--token-auth-file, group system:masters).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

export const ISSUER = 'https://kubernetes.default.svc.cluster.local';

export interface KubeResponse<T = Record<string, unknown>> {
  status: number;
  body: T;
  text: string;
}

export interface RequestOptions {
  body?: unknown;
  /** Bearer token; default the admin token. */
  token?: string;
  contentType?: string;
  timeoutMs?: number;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ControlPlane {
  private constructor(
    readonly dir: string,
    readonly url: string,
    /** PEM the API server's serving certificate chains to (its self-signed CA in --cert-dir). */
    readonly caFile: string,
    readonly adminToken: string,
    private readonly procs: ChildProcess[],
    private readonly logs: { etcd: string[]; apiserver: string[] },
    /** Starts a kube-apiserver with the same flags, port, certificates and keys (for restartApiserver()). */
    private readonly spawnApiserver: () => ChildProcess,
  ) {}

  /** Starts etcd, then kube-apiserver, and waits until /readyz answers ok (default bootstrap RBAC included). */
  static async start(bins: { etcd: string; apiserver: string }, opts: { extraArgs?: string[] } = {}): Promise<ControlPlane> {
    const dir = mkdtempSync(join(tmpdir(), 'vfio-handoff-cp-'));
    const [etcdClient, etcdPeer, securePort] = [await freePort(), await freePort(), await freePort()];
    const logs = { etcd: [] as string[], apiserver: [] as string[] };
    const procs: ChildProcess[] = [];
    const keep = (into: string[]) => (b: Buffer): void => {
      into.push(b.toString());
      if (into.length > 400) into.splice(0, into.length - 400);
    };
    const etcd = spawn(bins.etcd, [
      '--name', 'default',
      '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${etcdClient}`,
      '--advertise-client-urls', `http://127.0.0.1:${etcdClient}`,
      '--listen-peer-urls', `http://127.0.0.1:${etcdPeer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeer}`,
      '--initial-cluster', `default=http://127.0.0.1:${etcdPeer}`,
      // A test store: losing it on a crash is fine, waiting on fsync on a shared disk is not.
      '--unsafe-no-fsync',
      '--log-level', 'warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    etcd.stdout?.on('data', keep(logs.etcd));
    etcd.stderr?.on('data', keep(logs.etcd));
    procs.push(etcd);

    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const adminToken = `admin-${Math.random().toString(36).slice(2)}`;
    writeFileSync(join(dir, 'tokens.csv'), `${adminToken},admin,admin-uid,system:masters\n`);
    mkdirSync(join(dir, 'certs'));
    const apiserverArgs = [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${securePort}`,
      `--cert-dir=${join(dir, 'certs')}`,
      '--authorization-mode=RBAC',
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      `--service-account-key-file=${join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      `--service-account-issuer=${ISSUER}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      '--enable-admission-plugins=NodeRestriction,ValidatingAdmissionPolicy',
      // The DaemonSets are privileged (they move GPUs between drivers).
      '--allow-privileged=true',
      '--enable-priority-and-fairness=false',
      '--profiling=false',
      '--v=0',
      ...(opts.extraArgs ?? []),
    ];
    const spawnApiserver = (): ChildProcess => {
      const apiserver = spawn(bins.apiserver, apiserverArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
      apiserver.stdout?.on('data', keep(logs.apiserver));
      apiserver.stderr?.on('data', keep(logs.apiserver));
      return apiserver;
    };
    procs.push(spawnApiserver());

    const cp = new ControlPlane(dir, `https://127.0.0.1:${securePort}`, join(dir, 'certs', 'apiserver.crt'), adminToken, procs, logs, spawnApiserver);
    await cp.waitReady();
    return cp;
  }

  /** Polls /readyz until it answers 200; throws (and stops everything) if etcd or kube-apiserver exits, or after timeoutMs. */
  private async waitReady(timeoutMs = 240_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      for (const [i, p] of this.procs.entries()) {
        if (p.exitCode !== null || p.signalCode !== null) {
          const which = i === 0 ? 'etcd' : 'apiserver';
          const tail = this.log(which);
          await this.stop();
          throw new Error(`${i === 0 ? 'etcd' : 'kube-apiserver'} exited (${p.exitCode ?? p.signalCode}):\n${tail.slice(-3000)}`);
        }
      }
      try {
        const r = await this.request('GET', '/readyz', { timeoutMs: 5000 });
        if (r.status === 200) return;
        last = r.text;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) {
        const tail = this.log('apiserver');
        await this.stop();
        throw new Error(`kube-apiserver not ready within ${timeoutMs / 1000} s: ${last}\n${tail.slice(-3000)}`);
      }
      await sleep(250);
    }
  }

  /**
   * Stops kube-apiserver (SIGTERM, SIGKILL after 10 s) and leaves etcd running: the outage half of a
   * restart. Resolves once the process has exited.
   */
  async stopApiserver(): Promise<void> {
    const p = this.procs[1];
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }

  /**
   * Starts kube-apiserver again on the same port with the same flags, serving certificate (kept in
   * --cert-dir, which kube-apiserver reuses when present) and ServiceAccount keys, so clients reconnect
   * with the CA and tokens they hold; resolves when /readyz answers 200.
   */
  async startApiserver(timeoutMs = 240_000): Promise<void> {
    const p = this.procs[1];
    if (p && p.exitCode === null && p.signalCode === null) throw new Error('kube-apiserver is still running');
    this.procs[1] = this.spawnApiserver();
    await this.waitReady(timeoutMs);
  }

  /** stopApiserver() then startApiserver(): a kube-apiserver restart with etcd kept. */
  async restartApiserver(): Promise<void> {
    await this.stopApiserver();
    await this.startApiserver();
  }

  /** The tail of a component's output, for failure messages. */
  log(which: 'etcd' | 'apiserver'): string {
    return this.logs[which].join('').slice(-4000);
  }

  ca(): string {
    return readFileSync(this.caFile, 'utf8');
  }

  /** One HTTPS request to the API server; JSON bodies are encoded unless a string is given. */
  request<T = Record<string, unknown>>(method: string, path: string, opts: RequestOptions = {}): Promise<KubeResponse<T>> {
    const payload = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(`${this.url}${path}`, {
        method,
        ca: this.ca(),
        headers: {
          authorization: `Bearer ${opts.token ?? this.adminToken}`,
          accept: 'application/json',
          ...(payload !== undefined ? { 'content-type': opts.contentType ?? 'application/json' } : {}),
        },
        timeout: opts.timeoutMs ?? 30_000,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = {};
          try {
            body = JSON.parse(text);
          } catch {
            body = {};
          }
          resolve({ status: res.statusCode ?? 0, body: body as T, text });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /** Like request(), but throws unless the status is 2xx. */
  async ok<T = Record<string, unknown>>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const r = await this.request<T>(method, path, opts);
    if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path} → ${r.status}: ${r.text.slice(0, 2000)}`);
    return r.body;
  }

  /** Server-side apply of one object (PATCH application/apply-patch+yaml) at its resource path. */
  apply(path: string, object: unknown, opts: { token?: string; fieldManager?: string; dryRun?: boolean; force?: boolean } = {}): Promise<KubeResponse> {
    const q = new URLSearchParams({ fieldManager: opts.fieldManager ?? 'vfio-handoff-tests' });
    if (opts.dryRun) q.set('dryRun', 'All');
    if (opts.force) q.set('force', 'true');
    return this.request('PATCH', `${path}?${q}`, { body: object, contentType: 'application/apply-patch+yaml', ...(opts.token ? { token: opts.token } : {}) });
  }

  /** Waits until a CRD reports Established (its REST endpoint serves). */
  async waitEstablished(name: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const crd = await this.request<{ status?: { conditions?: { type: string; status: string }[] } }>('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      if (crd.body.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) return;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not Established: ${crd.text.slice(0, 500)}`);
      await sleep(100);
    }
  }

  /**
   * A ServiceAccount token from the TokenRequest API. Bound to a Pod with spec.nodeName, the token
   * carries the node (request.userInfo.extra['authentication.kubernetes.io/node-name']) — the token a
   * kubelet mounts into a DaemonSet pod.
   */
  async serviceAccountToken(namespace: string, serviceAccount: string, boundPod?: { name: string; uid: string }): Promise<string> {
    const body = await this.ok<{ status: { token: string } }>('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`, {
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          audiences: [ISSUER],
          expirationSeconds: 3600,
          ...(boundPod ? { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: boundPod.name, uid: boundPod.uid } } : {}),
        },
      },
    });
    return body.status.token;
  }

  /**
   * The pod a kubelet would run for `serviceAccount` on `nodeName` (never started: there is no kubelet),
   * and a token bound to it, as the agent's projected service-account volume would hold.
   */
  async podBoundToken(namespace: string, serviceAccount: string, nodeName: string, podName = `${serviceAccount}-${nodeName}`): Promise<string> {
    const pod = await this.ok<{ metadata: { uid: string } }>('POST', `/api/v1/namespaces/${namespace}/pods`, {
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: podName },
        spec: { nodeName, serviceAccountName: serviceAccount, automountServiceAccountToken: false, containers: [{ name: 'agent', image: 'registry.invalid/agent:0' }] },
      },
    });
    return this.serviceAccountToken(namespace, serviceAccount, { name: podName, uid: pod.metadata.uid });
  }

  /** A kubeconfig file for `token` (what --kubeconfig of the operator and the agent read). */
  writeKubeconfig(name: string, token: string): string {
    const file = join(this.dir, `${name}.kubeconfig`);
    writeFileSync(file, stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'peers', cluster: { server: this.url, 'certificate-authority': this.caFile } }],
      users: [{ name, user: { token } }],
      contexts: [{ name, context: { cluster: 'peers', user: name } }],
      'current-context': name,
    }));
    return file;
  }

  /** The API server's own Prometheus metrics (apiserver_request_total etc.). */
  async metrics(): Promise<string> {
    const r = await this.request('GET', '/metrics');
    return r.text;
  }

  async stop(): Promise<void> {
    for (const p of [...this.procs].reverse()) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
