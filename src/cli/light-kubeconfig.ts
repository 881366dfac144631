import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { InvalidArgumentError } from '../core/errors.js';
import type { LightKubeConfig } from '../kube/http-kube-api.js';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * Connection settings for the agent's light API client: the pod's service account when running in a
 * cluster (the DaemonSet case), else a kubeconfig file (--kubeconfig, $KUBECONFIG, ~/.kube/config) with
 * token or client-certificate auth. Exec and auth-provider plugins are not supported here: use
 * `--kube-client client-node` for those.
 */
export function loadLightKubeConfig(path: string | undefined, env: NodeJS.ProcessEnv = process.env): LightKubeConfig {
  if (!path && env.KUBERNETES_SERVICE_HOST && existsSync(`${SA_DIR}/token`)) {
    const host = env.KUBERNETES_SERVICE_HOST.includes(':') ? `[${env.KUBERNETES_SERVICE_HOST}]` : env.KUBERNETES_SERVICE_HOST;
    return {
      server: `https://${host}:${env.KUBERNETES_SERVICE_PORT ?? '443'}`,
      token: () => readFileSync(`${SA_DIR}/token`, 'utf8').trim(),
      ca: readFileSync(`${SA_DIR}/ca.crt`),
    };
  }
  const file = path ?? env.KUBECONFIG?.split(':')[0] ?? `${homedir()}/.kube/config`;
  let doc: KubeconfigDoc;
  try {
    doc = parseYaml(readFileSync(file, 'utf8')) as KubeconfigDoc;
  } catch (err) {
    throw new InvalidArgumentError(`cannot read kubeconfig ${file}: ${(err as Error).message}`, { cause: err });
  }
  return fromKubeconfig(doc, dirname(resolve(file)));
}

interface KubeconfigDoc {
  'current-context'?: string;
  contexts?: { name: string; context: { cluster: string; user: string } }[];
  clusters?: { name: string; cluster: { server: string; 'certificate-authority'?: string; 'certificate-authority-data'?: string; 'insecure-skip-tls-verify'?: boolean } }[];
  users?: { name: string; user: Record<string, unknown> }[];
}

export function fromKubeconfig(doc: KubeconfigDoc, baseDir: string): LightKubeConfig {
  const ctxName = doc['current-context'] ?? doc.contexts?.[0]?.name;
  const ctx = doc.contexts?.find((c) => c.name === ctxName)?.context;
  const cluster = doc.clusters?.find((c) => c.name === ctx?.cluster)?.cluster ?? (ctx ? undefined : doc.clusters?.[0]?.cluster);
  if (!cluster?.server) throw new InvalidArgumentError(`kubeconfig: no cluster server for context ${JSON.stringify(ctxName)}`);
  const user = (doc.users?.find((u) => u.name === ctx?.user)?.user ?? {}) as Record<string, string | undefined>;
  if (user.exec !== undefined || user['auth-provider'] !== undefined) {
    throw new InvalidArgumentError('kubeconfig uses an exec/auth-provider plugin; run the agent with --kube-client client-node');
  }
  const file = (p: string): Buffer => readFileSync(resolve(baseDir, p));
  const data = (d: string | undefined, p: string | undefined): Buffer | undefined => (d ? Buffer.from(d, 'base64') : p ? file(p) : undefined);
  const token = user.token;
  const tokenFile = user.tokenFile;
  const ca = data(cluster['certificate-authority-data'], cluster['certificate-authority']);
  const cert = data(user['client-certificate-data'], user['client-certificate']);
  const key = data(user['client-key-data'], user['client-key']);
  const cfg: LightKubeConfig = {
    server: cluster.server,
    ...(token ? { token: () => token } : tokenFile ? { token: () => readFileSync(resolve(baseDir, tokenFile), 'utf8').trim() } : {}),
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    ...(cluster['insecure-skip-tls-verify'] ? { insecureSkipTlsVerify: true } : {}),
  };
  return cfg;
}
