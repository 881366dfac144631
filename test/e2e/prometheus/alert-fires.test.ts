/**
 * End to end: a real Prometheus (Debian's package) on loopback scrapes a real metrics server whose recorder is
 * fed by the real handoff engine; a prepare fails on the simulated kernel (EBUSY on the audio function's unbind,
 * rolled back) and Prometheus, evaluating the shipped monitoring/alerts.yaml, fires VfioHandoffFailed.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { MetricsServer } from '../../../src/metrics/http-server.js';
import { createAgentMetrics } from '../../../src/metrics/metrics.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';
import { REPO_ROOT, ensurePrometheusPackage } from '../../unit/deploy/support/tools.js';

const { prometheus } = ensurePrometheusPackage();

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface PromAlert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}

describe.skipIf(!prometheus.path)('Prometheus sees a real handoff failure and fires the alert', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-handoff-prom-'));
  const registry = new Registry();
  const metrics = createAgentMetrics(registry);
  const server = new MetricsServer({ registry, readiness: () => true });
  let proc: ChildProcess | undefined;
  let promUrl = '';
  let log = '';

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${promUrl}${path}`);
    const body = (await res.json()) as { status: string; data: T };
    if (body.status !== 'success') throw new Error(`${path}: ${JSON.stringify(body)}`);
    return body.data;
  }

  async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe().catch(() => undefined);
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\nprometheus log:\n${log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  const alerts = () => api<{ alerts: PromAlert[] }>('/api/v1/alerts').then((d) => d.alerts);
  const instant = (q: string) =>
    api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent(q)}`).then((d) => d.result);

  beforeAll(async () => {
    const { port: agentPort } = await server.start('127.0.0.1:0');
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    const config = join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'rule_files:',
        `  - ${JSON.stringify(join(REPO_ROOT, 'monitoring/alerts.yaml'))}`,
        'scrape_configs:',
        '  - job_name: vfio-handoff-agent',
        '    static_configs:',
        `      - targets: ["127.0.0.1:${agentPort}"]`,
        '        labels: { node: sim-node, namespace: vfio-handoff }',
        '',
      ].join('\n'),
    );
    proc = spawn(
      prometheus.path ?? 'prometheus',
      [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    await until('the agent target to be up', async () => {
      const r = await instant('up{job="vfio-handoff-agent"} == 1');
      return r.length === 1 ? true : undefined;
    });
  }, 60_000);

  afterAll(async () => {
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc?.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stays silent while nothing failed, then fires VfioHandoffFailed for the rolled-back prepare', async () => {
    // The failure counter is scraped at 0 first: increase() needs that sample to see the failure.
    await until('the zero failure counter to be scraped', async () => {
      const r = await instant('vfio_handoff_handoff_failures_total{operation="prepare"} == 0');
      return r.length === 1 ? true : undefined;
    });
    await new Promise((r) => setTimeout(r, 2_000)); // a couple of rule evaluations
    expect((await alerts()).filter((a) => a.labels.alertname === 'VfioHandoffFailed')).toEqual([]);

    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    kernel.injectFault({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', errno: 'EBUSY', times: 1 });
    const engine = new HandoffEngine({
      host: kernel,
      store: new MemoryStateStore(),
      clock: realClock,
      logger: silentLogger,
      recorder: metrics,
      verifyTimeoutMs: 200,
      writeTimeoutMs: 500,
    });
    const report = await engine.prepare({ all: false, selectors: parseSelectors(['0000:01:00.0']) }, { allowBootGpu: true });
    expect(report.outcomes.map((o) => o.outcome)).toEqual(['rolled_back']);

    const firing = await until('VfioHandoffFailed to fire', async () => {
      const a = (await alerts()).find((x) => x.labels.alertname === 'VfioHandoffFailed' && x.state === 'firing');
      return a;
    });
    expect(firing.labels).toMatchObject({ node: 'sim-node', namespace: 'vfio-handoff', operation: 'prepare', severity: 'warning' });
    const reasons = await instant('vfio_handoff_handoff_attempts_total{result="rolled_back"}');
    expect(reasons.map((r) => r.metric.reason)).toEqual(['HOST_WRITE_FAILED']);
    // The other alerts have nothing to say about this host.
    expect((await alerts()).filter((a) => a.labels.alertname !== 'VfioHandoffFailed' && a.labels.alertname !== 'VfioHandoffNoOperatorLeader')).toEqual([]);
  }, 60_000);
});
