/**
 * A small HTTP endpoint for Prometheus and kubelet probes: /metrics, /healthz, /readyz.
 * node:http only: three fixed routes do not justify a framework in a privileged container.
 *
 * Bounded, because kubelet's liveness probe uses /healthz and any pod that can reach the port could
 * otherwise get the agent restarted: 19,800 idle connections held the process at its file limit and
 * /healthz stopped answering (issue 17). So: a cap on connections in all and per client address, an idle
 * timeout on every socket, and header/request timeouts (slowloris). Scrapers and probes need one or two
 * short connections each; the chart's NetworkPolicy keeps other pods off the port where the cluster
 * enforces policies.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { InvalidArgumentError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';

export interface ListenAddress {
  /** undefined = every interface (":9464"). */
  readonly host: string | undefined;
  readonly port: number;
}

/** Parses the `--metrics-addr` flag: ":9464", "0.0.0.0:9464", "127.0.0.1:0", "[::1]:9464". */
export function parseListenAddress(value: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new InvalidArgumentError(`invalid listen address ${JSON.stringify(value)}: expected [host]:port`);
  }
  const host = m[1] ?? (m[2] === '' ? undefined : m[2]);
  return { host, port };
}

export interface ReadinessReport {
  readonly ready: boolean;
  /** Shown in the /readyz body so `kubectl describe pod` explains an unready agent. */
  readonly detail?: string;
}

/** Limits of the metrics/health server; defaults suit one Prometheus and kubelet's probes. */
export interface MetricsServerLimits {
  /** Open connections in all; more are closed at once. Default 128. */
  readonly maxConnections?: number;
  /** Open connections per client address; more are closed at once. Default 16. */
  readonly maxConnectionsPerClient?: number;
  /** A socket with no traffic for this long is closed, ms. Default 10,000. */
  readonly idleTimeoutMs?: number;
  /** The whole request head must arrive within this, ms. Default 5,000. */
  readonly headersTimeoutMs?: number;
  /** The whole request must arrive within this, ms. Default 10,000. */
  readonly requestTimeoutMs?: number;
}

export interface MetricsServerDeps {
  readonly registry: Registry;
  /** Readiness of the component (e.g. agent: first reconcile done; operator: caches synced). */
  readonly readiness: () => ReadinessReport | boolean | Promise<ReadinessReport | boolean>;
  readonly logger?: Logger;
  readonly limits?: MetricsServerLimits;
}

export class MetricsServer {
  private readonly registry: Registry;
  private readonly readiness: MetricsServerDeps['readiness'];
  private readonly logger: Logger;
  private server: Server | undefined;
  private readonly limits: Required<MetricsServerLimits>;
  private readonly perClient = new Map<string, number>();
  private refusedSince = 0;
  private lastRefusalLog = -Infinity;

  constructor(deps: MetricsServerDeps) {
    this.registry = deps.registry;
    this.readiness = deps.readiness;
    this.logger = deps.logger ?? silentLogger;
    const l = deps.limits ?? {};
    this.limits = {
      maxConnections: l.maxConnections ?? 128,
      maxConnectionsPerClient: l.maxConnectionsPerClient ?? 16,
      idleTimeoutMs: l.idleTimeoutMs ?? 10_000,
      headersTimeoutMs: l.headersTimeoutMs ?? 5_000,
      requestTimeoutMs: l.requestTimeoutMs ?? 10_000,
    };
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free port, as tests do). */
  async start(address: ListenAddress | string): Promise<ListenAddress> {
    if (this.server) throw new InvalidArgumentError('metrics server already started');
    const addr = typeof address === 'string' ? parseListenAddress(address) : address;
    const lim = this.limits;
    const server = createServer(
      {
        headersTimeout: lim.headersTimeoutMs,
        requestTimeout: lim.requestTimeoutMs,
        // Node checks header/request timeouts on this period (default 30 s): check well within them.
        connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(lim.headersTimeoutMs / 2))),
      },
      (req, res) => {
        this.handle(req, res).catch((err: unknown) => {
          this.logger.error({ err }, 'metrics endpoint failed');
          if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
          res.end('internal error\n');
        });
      },
    );
    // Scrapers keep connections alive; without this, stop() would wait for their idle timeout.
    server.keepAliveTimeout = Math.min(5_000, lim.idleTimeoutMs);
    server.maxConnections = lim.maxConnections;
    // With no 'timeout' listener, node:http destroys a socket idle for this long (a connection that
    // never sends a byte included).
    server.timeout = lim.idleTimeoutMs;
    server.on('connection', (socket) => {
      const who = socket.remoteAddress ?? '?';
      const n = (this.perClient.get(who) ?? 0) + 1;
      if (n > lim.maxConnectionsPerClient) {
        socket.destroy();
        this.refused(who);
        return;
      }
      this.perClient.set(who, n);
      socket.once('close', () => {
        const left = (this.perClient.get(who) ?? 1) - 1;
        if (left <= 0) this.perClient.delete(who);
        else this.perClient.set(who, left);
      });
    });
    server.on('drop', (data?: { remoteAddress?: string }) => this.refused(data?.remoteAddress ?? '?'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(addr.port, addr.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const bound = server.address() as AddressInfo;
    this.logger.info({ address: bound.address, port: bound.port }, 'metrics server listening');
    return { host: bound.address, port: bound.port };
  }

  /** Logs refused connections at most once a minute, with how many since the last line. */
  private refused(who: string): void {
    this.refusedSince++;
    const now = Date.now();
    if (now - this.lastRefusalLog < 60_000) return;
    this.lastRefusalLog = now;
    this.logger.warn(
      { client: who, refused: this.refusedSince, limits: { total: this.limits.maxConnections, perClient: this.limits.maxConnectionsPerClient } },
      'metrics server refusing connections over its limits',
    );
    this.refusedSince = 0;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return;
    }
    switch (path) {
      case '/metrics': {
        const body = await this.registry.metrics();
        res.writeHead(200, { 'content-type': this.registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      case '/healthz':
        // Liveness only says the event loop answers; a failing handoff must not get the agent restarted.
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('ok\n');
        return;
      case '/readyz': {
        let report: ReadinessReport;
        try {
          const raw = await this.readiness();
          report = typeof raw === 'boolean' ? { ready: raw } : raw;
        } catch (err) {
          // A readiness probe that throws means "not ready", not "the endpoint is broken".
          report = { ready: false, detail: err instanceof Error ? err.message : String(err) };
        }
        res.writeHead(report.ready ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`${report.ready ? 'ready' : 'not ready'}${report.detail ? `: ${report.detail}` : ''}\n`);
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('not found\n');
    }
  }
}
