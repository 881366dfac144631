/**
 * Connection reuse for client-node's API calls.
 *
 * client-node 1.4 builds a fresh `https.Agent` for every request (`KubeConfig.applySecurityAuthentication` →
 * `createAgent`, node_modules/@kubernetes/client-node/dist/config.js), and a fresh agent has an empty socket pool,
 * so every GET, PATCH or status write pays a new TCP connection and TLS handshake with the API server. On the
 * operator's 1,000-node reconcile that is thousands of handshakes, and as many connections the API server must
 * accept. This keeps one keep-alive agent per distinct TLS identity (CA, client certificate and key, verification
 * and server name) and puts it in place of the one client-node made; client-go does the same with its shared
 * transport cache (k8s.io/client-go/transport/cache.go).
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';

/** Most distinct TLS identities kept (a rotated client certificate is a new identity; the oldest is closed). */
const MAX_AGENTS = 4;

type TlsValue = string | Buffer | readonly (string | Buffer)[] | boolean | undefined;

function fingerprint(options: Record<string, unknown>): string {
  const h = createHash('sha256');
  for (const k of ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername']) {
    const v = options[k] as TlsValue;
    const parts = v === undefined ? ['-'] : Array.isArray(v) ? v : [v];
    h.update(k);
    for (const p of parts) h.update(Buffer.isBuffer(p) ? p : String(p)).update('\0');
  }
  return h.digest('hex');
}

export class KeepAliveAgents {
  private readonly agents = new Map<string, http.Agent>();

  /**
   * The pooled keep-alive agent equivalent to `agent`, creating it on first use. Agents of other kinds (the
   * proxy agents client-node makes for `proxy-url`) and no agent at all are returned unchanged.
   */
  reuse(agent: unknown): unknown {
    if (agent === undefined || agent === null) return agent;
    const proto = Object.getPrototypeOf(agent) as unknown;
    if (proto !== https.Agent.prototype && proto !== http.Agent.prototype) return agent;
    const tls = proto === https.Agent.prototype;
    const options = ((agent as { options?: Record<string, unknown> }).options ?? {}) as Record<string, unknown>;
    const key = `${tls ? 'https' : 'http'}:${fingerprint(options)}`;
    let pooled = this.agents.get(key);
    if (!pooled) {
      const base = { ...options, keepAlive: true };
      pooled = tls ? new https.Agent(base) : new http.Agent(base);
      this.agents.set(key, pooled);
      if (this.agents.size > MAX_AGENTS) {
        const [oldest, a] = this.agents.entries().next().value as [string, http.Agent];
        this.agents.delete(oldest);
        a.destroy();
      }
    }
    return pooled;
  }

  get size(): number {
    return this.agents.size;
  }

  /** Closes every pooled connection (process shutdown, tests). */
  destroy(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}
