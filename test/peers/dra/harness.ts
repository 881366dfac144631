/**
 * The DRA peers (issue 13), built by scripts/build-peers.mjs from test/peers/dra (k8s.io/kubernetes v1.34.4) and
 * test/peers/kubevirt-dra (kubevirt.io/kubevirt v1.8.0):
 * - KubeletDra drives cmd/kubelet-dra — kubelet's own DRA manager behind its own plugin manager — over the
 *   JSON-lines protocol documented in its main.go;
 * - startScheduler runs the upstream kube-scheduler against a ControlPlane;
 * - readKubevirtMetadata runs KubeVirt's DRA metadata reader and GPU host-device builder;
 * - applyCdiMounts plays the container runtime's part: the CDI mounts of the devices kubelet got are made
 *   visible under a directory standing in for the container's root.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { JsonLinesChild } from '../support/json-lines-child.js';
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export class KubeletDra {
  private constructor(private readonly child: JsonLinesChild) {}

  /** Starts the harness (klog -v=5: registration, the chosen DRA service and each gRPC call are logged). */
  static spawn(binary: string): KubeletDra {
    return new KubeletDra(JsonLinesChild.spawn(binary, 'kubelet DRA manager'));
  }

  /** Everything kubelet logged so far (klog text). */
  get logs(): string {
    return this.child.logs;
  }

  private call<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    return this.child.call<T>(op, args);
  }

  start(opts: { registryDir: string; stateDir: string; kubeconfig: string; nodeName: string }): Promise<unknown> {
    return this.call('start', opts);
  }
  registered(driver: string): Promise<{ registered: boolean; reason?: string }> {
    return this.call('registered', { driver });
  }
  /** Manager.PrepareResources for the pod as the API server has it; per container the CDI device IDs kubelet hands the runtime. */
  prepare(namespace: string, name: string): Promise<{ cdiDevices: Record<string, string[]> }> {
    return this.call('prepare', { namespace, name });
  }
  unprepare(namespace: string, name: string): Promise<unknown> {
    return this.call('unprepare', { namespace, name });
  }

  close(): Promise<void> {
    return this.child.close();
  }
}

/** The upstream kube-scheduler on `kubeconfig`: no leader election, no serving port (nothing scrapes it here). */
export function startScheduler(binary: string, kubeconfig: string): { proc: ChildProcess; logs: () => string } {
  let log = '';
  const proc = spawn(binary, [`--kubeconfig=${kubeconfig}`, '--leader-elect=false', '--secure-port=0', '--v=4'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (d: Buffer): void => {
    log += d.toString();
    if (log.length > 400_000) log = log.slice(-200_000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  return { proc, logs: () => log };
}

export interface ReaderOutput {
  /** KubeVirt's DefaultMetadataBasePath: where virt-launcher looks inside its container. */
  defaultBasePath: string;
  /** Per VMI GPU name: the PCI address KubeVirt's GetPCIAddressForClaim returned, or "error: …". */
  pciAddresses: Record<string, string>;
  hostDevices: { alias: string; type: string; managed: string; address?: Record<string, string> }[];
  hostDevicesError?: string;
}

/** KubeVirt v1.8.0's DRA metadata reader on `basePath` for a VMI (spec.resourceClaims + gpus[].claimName/requestName). */
export function readKubevirtMetadata(binary: string, basePath: string, vmi: unknown): ReaderOutput {
  const r = spawnSync(binary, [], { input: JSON.stringify({ basePath, vmi }), encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`kubevirt-dra-reader exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as ReaderOutput;
}

interface CdiSpec {
  kind: string;
  devices: { name: string; containerEdits?: CdiEdits }[];
  containerEdits?: CdiEdits;
}
interface CdiEdits {
  mounts?: { hostPath: string; containerPath: string }[];
  deviceNodes?: { path: string; hostPath?: string }[];
  env?: string[];
}

/** The container edits of fully-qualified CDI device IDs (`vendor/class=name`), from the spec files in `cdiDir`. */
export function cdiEdits(cdiDir: string, ids: readonly string[]): { id: string; edits: CdiEdits }[] {
  const specs = readdirSync(cdiDir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(cdiDir, f), 'utf8')) as CdiSpec);
  return ids.map((id) => {
    const [kind, name] = id.split('=') as [string, string];
    for (const spec of specs) {
      if (spec.kind !== kind) continue;
      const dev = spec.devices.find((d) => d.name === name);
      if (dev) return { id, edits: { ...dev.containerEdits, mounts: [...(spec.containerEdits?.mounts ?? []), ...(dev.containerEdits?.mounts ?? [])] } };
    }
    throw new Error(`CDI device ${id} is in no spec under ${cdiDir}`);
  });
}

/**
 * What the container runtime does with the CDI mounts of `ids`: each hostPath appears at its containerPath,
 * here under `containerRoot` (a copy: the reader only reads). Returns the container paths.
 */
export function applyCdiMounts(cdiDir: string, ids: readonly string[], containerRoot: string): string[] {
  const out: string[] = [];
  for (const { edits } of cdiEdits(cdiDir, ids)) {
    for (const m of edits.mounts ?? []) {
      const target = join(containerRoot, m.containerPath);
      mkdirSync(dirname(target), { recursive: true });
      copyFileSync(m.hostPath, target);
      out.push(m.containerPath);
    }
  }
  return out;
}
