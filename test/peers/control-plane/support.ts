import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import type { ControlPlane } from '../../support/control-plane.js';
import { PEERS_REQUIRED } from '../../support/peers.js';
import { REPO_ROOT, ensureHelm, ensureKubectl } from '../../unit/deploy/support/tools.js';

export { REPO_ROOT };

export interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

export function parseObjects(text: string): Obj[] {
  return parseAllDocuments(text).map((d) => d.toJSON() as Obj).filter((o) => o && typeof o === 'object' && o.kind);
}

export function kustomize(dir: string): Obj[] {
  const kubectl = ensureKubectl();
  if (!kubectl.path) throw new Error(kubectl.missing);
  return parseObjects(execFileSync(kubectl.path, ['kustomize', join(REPO_ROOT, dir)], { encoding: 'utf8' }));
}

export function helmTemplate(values: unknown, namespace: string, release = 'vh'): Obj[] {
  const helm = ensureHelm();
  if (!helm.path) throw new Error(helm.missing);
  const f = join(mkdtempSync(join(tmpdir(), 'vh-values-')), 'values.yaml');
  writeFileSync(f, stringify(values));
  const r = spawnSync(helm.path, ['template', release, join(REPO_ROOT, 'helm/vfio-handoff'), '--namespace', namespace, '--include-crds', '-f', f], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseObjects(r.stdout);
}

/** Why kubectl or helm is missing (for skip titles), or undefined. Under CI=true the tools throw instead. */
export function deployToolsMissing(): string | undefined {
  return ensureKubectl().missing ?? ensureHelm().missing;
}

/**
 * A module from the Go module proxy at a pinned version (its source tree in the module cache), e.g. the
 * Prometheus Operator's CRDs. `go mod download` is the Go toolchain's own fetch; nothing is committed.
 */
export function goModuleDir(module: string, version: string): { dir: string; skip?: undefined } | { skip: string } {
  const r = spawnSync('go', ['mod', 'download', '-json', `${module}@${version}`], { encoding: 'utf8', timeout: 300_000 });
  const info = r.status === 0 ? (JSON.parse(r.stdout) as { Dir?: string; Error?: string }) : undefined;
  if (info?.Dir) return { dir: info.Dir };
  const why = `go mod download ${module}@${version} failed: ${info?.Error ?? r.stderr ?? r.error?.message}`;
  if (PEERS_REQUIRED) throw new Error(why);
  return { skip: why };
}

/** The Prometheus Operator release whose CRDs (monitoring.coreos.com) the tests install. */
export const PROMETHEUS_OPERATOR = { module: 'github.com/prometheus-operator/prometheus-operator', version: 'v0.81.0' };

export function prometheusOperatorCrds(kinds: string[]): Obj[] {
  const mod = goModuleDir(PROMETHEUS_OPERATOR.module, PROMETHEUS_OPERATOR.version);
  if (mod.skip !== undefined) throw new Error(mod.skip);
  return kinds.map((plural) => parseObjects(readFileSync(join(mod.dir, 'example/prometheus-operator-crd', `monitoring.coreos.com_${plural}.yaml`), 'utf8'))[0] as Obj);
}

interface ApiResource {
  name: string;
  kind: string;
  namespaced: boolean;
}

/** Resource paths from the API server's discovery documents (cached per group/version; refreshed on a miss). */
export class Discovery {
  private readonly cache = new Map<string, ApiResource[]>();
  constructor(private readonly cp: ControlPlane) {}

  async path(o: Obj, namespace?: string): Promise<string> {
    const gv = o.apiVersion;
    const base = gv.includes('/') ? `/apis/${gv}` : `/api/${gv}`;
    let res = this.cache.get(gv)?.find((r) => r.kind === o.kind && !r.name.includes('/'));
    if (!res) {
      const list = await this.cp.request<{ resources?: ApiResource[] }>('GET', base);
      this.cache.set(gv, list.body.resources ?? []);
      res = this.cache.get(gv)?.find((r) => r.kind === o.kind && !r.name.includes('/'));
    }
    if (!res) throw new Error(`the API server serves no ${o.kind} in ${gv}`);
    const ns = namespace ?? o.metadata.namespace;
    if (res.namespaced && !ns) throw new Error(`${o.kind}/${o.metadata.name} has no namespace`);
    return `${base}${res.namespaced ? `/namespaces/${ns}` : ''}/${res.name}/${o.metadata.name}`;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something other than undefined/false, or throws its last state. */
export async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await sleep(200);
  }
}

/** A CLI process a peers test started (operator, agent): its stderr kept as a bounded tail for failure messages. */
export interface CliProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly log: string[];
}

/** Starts the built CLI with `args` and keeps the last ~200 stderr chunks in `log`. */
export function startCli(cli: string, name: string, args: readonly string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const p: CliProcess = { name, child, log: [] };
  child.stderr?.on('data', (b: Buffer) => {
    p.log.push(b.toString());
    if (p.log.length > 300) p.log.splice(0, 100);
  });
  return p;
}

/** Every process's exit state and stderr tail, for an assertion message. */
export function processLogs(procs: readonly CliProcess[]): string {
  return procs.map((p) => `--- ${p.name} (exit ${p.child.exitCode ?? p.child.signalCode ?? 'running'})\n${p.log.join('').slice(-1500)}`).join('\n');
}

/** The built CLI, the namespace the deploy/ objects use, the CRDs' collection paths and the H100s of server-aspeed-4xh100. */
export const CLI = join(REPO_ROOT, 'dist/cli/main.js');
export const NS = 'vfio-handoff';
export const GPT = '/apis/handoff.dev/v1alpha1/gpupassthroughs';
export const NGP = '/apis/handoff.dev/v1alpha1/nodegpupassthroughs';
export const H100 = ['0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0'] as const;
