import { get as httpGet, request as httpRequest, type IncomingMessage } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';
import { eventually } from '../../support/eventually.js';
import { KUBEVIRT_CRD, KUBEVIRT_CRD_WITHOUT_SCHEMA } from '../../support/kubevirt-crd.js';

interface WatchLine {
  type: string;
  object: { metadata?: { name?: string; resourceVersion?: string }; code?: number; reason?: string };
}

/** Opens a watch on the raw HTTP stream and collects its lines. */
function openWatch(url: string): Promise<{ res: IncomingMessage; lines: WatchLine[]; ended: Promise<void>; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, (res) => {
      const lines: WatchLine[] = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          lines.push(JSON.parse(buf.slice(0, i)) as WatchLine);
          buf = buf.slice(i + 1);
        }
      });
      const ended = new Promise<void>((r) => res.on('close', () => r()));
      resolve({ res, lines, ended, close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}

async function send(base: string, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method, headers: { 'content-type': contentType } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(JSON.stringify(body));
    req.end();
  });
}


const NGP = '/apis/handoff.dev/v1alpha1/nodegpupassthroughs';

describe(FakeApiServer.name, () => {
  let server: FakeApiServer;
  beforeEach(async () => {
    server = await FakeApiServer.start();
  });
  afterEach(async () => {
    await server.close();
  });

  it('replays events after the given resourceVersion, then streams live ones', async () => {
    const a = await send(server.url, 'POST', NGP, { metadata: { name: 'a' } });
    const rvA = (a.body['metadata'] as { resourceVersion: string }).resourceVersion;
    await send(server.url, 'POST', NGP, { metadata: { name: 'b' } });
    const w = await openWatch(`${server.url}${NGP}?watch=true&resourceVersion=${rvA}`);
    await send(server.url, 'DELETE', `${NGP}/a`);
    await eventually(() => expect(w.lines.map((l) => `${l.type} ${l.object.metadata?.name}`)).toEqual(['ADDED b', 'DELETED a']));
    const rvs = w.lines.map((l) => Number(l.object.metadata?.resourceVersion));
    expect(rvs[1]).toBeGreaterThan(rvs[0] as number);
    w.close();
  });

  it('sends synthetic ADDED events for a watch without a resourceVersion and filters by label', async () => {
    await send(server.url, 'POST', NGP, { metadata: { name: 'a', labels: { pool: 'x' } } });
    await send(server.url, 'POST', NGP, { metadata: { name: 'b', labels: { pool: 'y' } } });
    const w = await openWatch(`${server.url}${NGP}?watch=true&labelSelector=pool%3Dx`);
    await send(server.url, 'POST', NGP, { metadata: { name: 'c', labels: { pool: 'x' } } });
    await send(server.url, 'POST', NGP, { metadata: { name: 'd' } });
    await eventually(() => expect(w.lines.map((l) => `${l.type} ${l.object.metadata?.name}`)).toEqual(['ADDED a', 'ADDED c']));
    w.close();
  });

  it('sends BOOKMARKs carrying the current resourceVersion only to watches that allow them', async () => {
    const withBm = await openWatch(`${server.url}${NGP}?watch=true&resourceVersion=1&allowWatchBookmarks=true`);
    const without = await openWatch(`${server.url}${NGP}?watch=true&resourceVersion=1`);
    await send(server.url, 'POST', '/api/v1/nodes', { metadata: { name: 'n1' } }); // other resource: bumps the global rv
    server.sendBookmarks();
    await eventually(() => expect(withBm.lines).toHaveLength(1));
    expect(withBm.lines[0]?.type).toBe('BOOKMARK');
    expect(withBm.lines[0]?.object.metadata?.resourceVersion).toBe(String(server.resourceVersion));
    await new Promise((r) => setTimeout(r, 20));
    expect(without.lines).toHaveLength(0);
    withBm.close();
    without.close();
  });

  it('answers a watch from before the compaction point with an ERROR 410 event and ends the stream', async () => {
    await send(server.url, 'POST', NGP, { metadata: { name: 'a' } });
    await send(server.url, 'POST', NGP, { metadata: { name: 'b' } });
    server.compact();
    const w = await openWatch(`${server.url}${NGP}?watch=true&resourceVersion=1`);
    await w.ended;
    expect(w.lines).toEqual([{ type: 'ERROR', object: expect.objectContaining({ code: 410, reason: 'Expired' }) }]);
    // A watch from the current version is still fine.
    const ok = await openWatch(`${server.url}${NGP}?watch=true&resourceVersion=${server.resourceVersion}`);
    await send(server.url, 'POST', NGP, { metadata: { name: 'c' } });
    await eventually(() => expect(ok.lines.map((l) => l.type)).toEqual(['ADDED']));
    ok.close();
  });

  it('compacts by itself when the history limit is exceeded', async () => {
    const small = await FakeApiServer.start({ historyLimit: 2 });
    try {
      for (const n of ['a', 'b', 'c', 'd']) await send(small.url, 'POST', NGP, { metadata: { name: n } });
      const w = await openWatch(`${small.url}${NGP}?watch=true&resourceVersion=1`);
      await w.ended;
      expect(w.lines[0]?.object.code).toBe(410);
      const w2 = await openWatch(`${small.url}${NGP}?watch=true&resourceVersion=2`);
      await eventually(() => expect(w2.lines.map((l) => l.object.metadata?.name)).toEqual(['c', 'd']));
      w2.close();
    } finally {
      await small.close();
    }
  });

  it('refuses a v1 CRD without a schema as the real server does (422, "schemas are required")', async () => {
    const r = await send(server.url, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', KUBEVIRT_CRD_WITHOUT_SCHEMA);
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body)).toContain('spec.versions[0].schema.openAPIV3Schema: Required value');
    expect((await send(server.url, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', KUBEVIRT_CRD)).status).toBe(201);
  });

  it('delivers watch events late but in order under setWatchDelay, after the write has returned', async () => {
    const w = await openWatch(`${server.url}/api/v1/nodes?watch=1&resourceVersion=0`);
    server.setWatchDelay(200);
    for (const name of ['a', 'b', 'c']) expect((await send(server.url, 'POST', '/api/v1/nodes', { metadata: { name } })).status).toBe(201);
    expect(w.lines).toEqual([]);
    await eventually(() => expect(w.lines.map((l) => l.object.metadata?.name)).toEqual(['a', 'b', 'c']), 5000);
    w.close();
  });

  it('supports generateName, 409 AlreadyExists with a Status body, and counts requests per verb and resource', async () => {
    const g = await send(server.url, 'POST', NGP, { metadata: { generateName: 'node-' } });
    expect((g.body['metadata'] as { name: string }).name).toMatch(/^node-.{5}$/);
    await send(server.url, 'POST', NGP, { metadata: { name: 'a' } });
    const dup = await send(server.url, 'POST', NGP, { metadata: { name: 'a' } });
    expect(dup.status).toBe(409);
    expect(dup.body).toMatchObject({ kind: 'Status', reason: 'AlreadyExists', code: 409 });
    await send(server.url, 'PATCH', `${NGP}/a/status`, { status: { x: 1 } }, 'application/merge-patch+json');
    expect(server.counts()).toMatchObject({ 'create handoff.dev/nodegpupassthroughs': 3, 'patch handoff.dev/nodegpupassthroughs/status': 1 });
  });

  it('stores 1,000 nodes with 8 GPUs each and lists them with a selector quickly', async () => {
    const t0 = Date.now();
    for (let i = 0; i < 1000; i++) {
      server.seed('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', {
        metadata: { name: `node-${i}`, labels: { rack: String(i % 10) } },
        spec: { gpus: Array.from({ length: 8 }, (_, g) => ({ address: `0000:${(0x41 + g).toString(16)}:00.0`, resourceName: 'handoff.dev/gpu' })) },
      });
    }
    const list = await send(server.url, 'GET', `${NGP}?labelSelector=rack%3D3`);
    expect((list.body['items'] as unknown[]).length).toBe(100);
    const all = await send(server.url, 'GET', NGP);
    expect((all.body['items'] as unknown[]).length).toBe(1000);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});
