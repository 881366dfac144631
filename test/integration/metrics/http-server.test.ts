import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/core/errors.js';
import { MetricsServer, parseListenAddress } from '../../../src/metrics/http-server.js';
import { createAgentMetrics } from '../../../src/metrics/metrics.js';

interface Reply {
  status: number;
  contentType: string | undefined;
  body: string;
}

function get(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('parseListenAddress', () => {
  it.each([
    [':9464', { host: undefined, port: 9464 }],
    ['0.0.0.0:9465', { host: '0.0.0.0', port: 9465 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:9464', { host: '::1', port: 9464 }],
    ['localhost:80', { host: 'localhost', port: 80 }],
  ])('parses %s', (input, expected) => {
    expect(parseListenAddress(input)).toEqual(expected);
  });

  it.each(['9464', ':99999', 'host:', ':-1', '1.2.3.4:80/x', ''])('rejects %j', (input) => {
    expect(() => parseListenAddress(input)).toThrow(InvalidArgumentError);
  });
});

describe(MetricsServer.name, () => {
  const servers: MetricsServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });

  async function start(readiness: ConstructorParameters<typeof MetricsServer>[0]['readiness']) {
    const registry = new Registry();
    const metrics = createAgentMetrics(registry);
    const sut = new MetricsServer({ registry, readiness });
    servers.push(sut);
    const { port } = await sut.start('127.0.0.1:0');
    return { sut, port, metrics };
  }

  it('serves the exposition text of the injected registry on /metrics', async () => {
    const { port, metrics } = await start(() => true);
    metrics.handoffFinished('prepare', 'failure', 'VERIFY_FAILED', 1.5);
    const reply = await get(port, '/metrics');
    expect(reply.status).toBe(200);
    expect(reply.contentType).toContain('text/plain');
    expect(reply.body).toContain('vfio_handoff_handoff_attempts_total{operation="prepare",result="failure",reason="VERIFY_FAILED"} 1');
  });

  it('answers /healthz while /readyz follows the injected callback', async () => {
    let ready: boolean = false;
    const { port } = await start(() => (ready ? { ready: true } : { ready: false, detail: 'first reconcile pending' }));
    expect((await get(port, '/healthz')).status).toBe(200);
    const notReady = await get(port, '/readyz');
    expect(notReady.status).toBe(503);
    expect(notReady.body).toContain('first reconcile pending');
    ready = true;
    expect((await get(port, '/readyz')).status).toBe(200);
  });

  it('treats a throwing or rejecting readiness callback as not ready', async () => {
    const { port } = await start(() => Promise.reject(new Error('cache not synced')));
    const reply = await get(port, '/readyz');
    expect(reply.status).toBe(503);
    expect(reply.body).toContain('cache not synced');
  });

  it('answers 404 for unknown paths and 405 for writes', async () => {
    const { port } = await start(() => true);
    expect((await get(port, '/nope')).status).toBe(404);
    expect((await get(port, '/metrics', 'POST')).status).toBe(405);
    expect((await get(port, '/metrics?x=1')).status).toBe(200);
  });

  it('releases the port on stop and refuses a second start', async () => {
    const { sut, port } = await start(() => true);
    await expect(sut.start('127.0.0.1:0')).rejects.toBeInstanceOf(InvalidArgumentError);
    await sut.stop();
    await expect(get(port, '/healthz')).rejects.toThrow();
    // The port is free again: a new server can take exactly it.
    const again = new MetricsServer({ registry: new Registry(), readiness: () => true });
    servers.push(again);
    await expect(again.start({ host: '127.0.0.1', port })).resolves.toEqual({ host: '127.0.0.1', port });
  });
});

describe('MetricsServer under a connection flood (issue 17, item 5)', () => {
  let server: MetricsServer | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await server?.stop();
    server = undefined;
  });

  /** Opens `n` idle TCP connections from `localAddress` (another loopback address: another pod). */
  async function flood(port: number, n: number, localAddress: string): Promise<Socket[]> {
    const opened = await Promise.all(
      Array.from({ length: n }, () => new Promise<Socket>((resolve) => {
        const s = connect({ host: '127.0.0.1', port, localAddress });
        s.on('error', () => undefined);
        s.resume(); // read, so a close by the server is seen
        s.once('connect', () => resolve(s));
        s.once('close', () => resolve(s));
      })),
    );
    sockets.push(...opened);
    return opened;
  }

  async function stillOpen(socks: Socket[]): Promise<number> {
    await new Promise((r) => setTimeout(r, 200)); // let the server's closes arrive
    return socks.filter((s) => !s.destroyed && !s.readableEnded && s.readyState === 'open').length;
  }

  it('keeps answering /healthz while another client holds hundreds of idle connections, and closes them when idle', async () => {
    server = new MetricsServer({ registry: new Registry(), readiness: () => true, limits: { idleTimeoutMs: 1_500, headersTimeoutMs: 1_000 } });
    const { port } = await server.start('127.0.0.1:0');
    const idle = await flood(port, 500, '127.0.0.2');
    // The flooding client keeps at most its per-client share (16); the rest are closed as they are accepted.
    for (let i = 0; i < 50 && (await stillOpen(idle)) > 16; i++);
    expect(await stillOpen(idle)).toBeLessThanOrEqual(16);
    for (let i = 0; i < 5; i++) expect((await get(port, '/healthz')).status).toBe(200);
    // The ones it kept never sent a request: closed by the idle/header timeouts.
    for (let i = 0; i < 100 && (await stillOpen(idle)) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await stillOpen(idle)).toBe(0);
  }, 30_000);

  it('caps connections in all', async () => {
    server = new MetricsServer({ registry: new Registry(), readiness: () => true, limits: { maxConnections: 20, maxConnectionsPerClient: 100 } });
    const { port } = await server.start('127.0.0.1:0');
    const idle = await flood(port, 100, '127.0.0.3');
    for (let i = 0; i < 50 && (await stillOpen(idle)) > 20; i++);
    expect(await stillOpen(idle)).toBeLessThanOrEqual(20);
  });
});
