import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registerOperatorCommand } from '../../../src/cli/operator-command.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';
import { eventually } from './harness.js';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('vfio-handoff operator (CLI)', () => {
  let server: FakeApiServer;
  let dir: string;
  beforeEach(async () => {
    server = await FakeApiServer.start();
    dir = await mkdtemp(join(tmpdir(), 'operator-cli-'));
  });
  afterEach(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs against --kubeconfig, serves probes and metrics, takes the Lease, and stops cleanly', async () => {
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(kubeconfig, server.kubeConfig().exportConfig());
    const port = await freePort();
    const stop = new AbortController();
    const program = new Command().exitOverride();
    registerOperatorCommand(program, { stop: stop.signal });
    const run = program.parseAsync(
      ['operator', '--kubeconfig', kubeconfig, '--metrics-addr', `127.0.0.1:${port}`, '--lease-namespace', 'ops', '--log-level', 'silent'],
      { from: 'user' },
    );
    try {
      await eventually(async () => {
        const r = await fetch(`http://127.0.0.1:${port}/readyz`);
        expect(r.status).toBe(200);
      });
      await eventually(async () => {
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        expect(metrics).toMatch(/^vfio_handoff_operator_leader 1$/m);
      });
      const lease = server.object('coordination.k8s.io', 'v1', 'leases', 'vfio-handoff-operator', 'ops');
      expect((lease?.['spec'] as { holderIdentity?: string }).holderIdentity).toMatch(/_[0-9a-f]{8}$/);
    } finally {
      stop.abort();
      await run;
    }
    // Stopping released the Lease for a successor.
    const lease = server.object('coordination.k8s.io', 'v1', 'leases', 'vfio-handoff-operator', 'ops');
    expect((lease?.['spec'] as { holderIdentity?: string }).holderIdentity).toBe('');
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });

  it('rejects a --leader-elect value that is not a boolean', async () => {
    const program = new Command().exitOverride().configureOutput({ writeErr: () => undefined });
    registerOperatorCommand(program);
    await expect(program.parseAsync(['operator', '--leader-elect=maybe'], { from: 'user' })).rejects.toMatchObject({ code: 'commander.invalidArgument' });
  });
});
