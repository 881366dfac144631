import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createAgentMetrics, createOperatorMetrics } from '../../../src/metrics/metrics.js';
import { REPO_ROOT, ensurePrometheusPackage } from './support/tools.js';

const { promtool } = ensurePrometheusPackage();

interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string> }[] }[];
}
const alerts = parse(readFileSync(join(REPO_ROOT, 'monitoring/alerts.yaml'), 'utf8')) as RuleFile;
const rules = alerts.groups.flatMap((g) => g.rules);

/** Every series name our registries can expose, histogram sample suffixes included. */
async function exposedNames(): Promise<Set<string>> {
  const registry = new Registry();
  createAgentMetrics(registry);
  createOperatorMetrics(registry);
  const names = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${m.name}${s}`);
  }
  return names;
}

const PROMQL_WORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'inf', 'nan']);

/** Metric names used by a PromQL expression: identifiers that are not functions, keywords, labels or strings. */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '') // label lists
    .replace(/\[[^\]]*\]/g, '') // range selectors
    .replace(/\$\w+/g, ''); // Grafana variables ($__rate_interval)
  const out = new Set<string>();
  for (const m of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?/g)) {
    const word = m[0].replace(/\s*\($/, '');
    if (m[1] !== undefined || PROMQL_WORDS.has(word.toLowerCase())) continue;
    out.add(word);
  }
  return [...out];
}

describe('monitoring/alerts.yaml', () => {
  it('defines the five alert families of the issue', () => {
    expect(rules.map((r) => r.alert)).toEqual([
      'VfioHandoffFailed',
      'VfioHandoffGpuFailed',
      'VfioHandoffPassthroughGpuUnhealthy',
      'VfioHandoffPluginNotRegistered',
      'VfioHandoffPolicyDegraded',
      'VfioHandoffNoOperatorLeader',
    ]);
    for (const r of rules) expect(['warning', 'critical'], r.alert).toContain(r.labels?.severity);
  });

  it('uses only metrics that our registries export', async () => {
    const names = await exposedNames();
    for (const r of rules) {
      const used = metricNames(r.expr);
      expect(used.length, `${r.alert} uses no metric`).toBeGreaterThan(0);
      for (const m of used) expect(names.has(m), `${r.alert}: ${m} is not exported`).toBe(true);
    }
  });

  it('finds metric names the way the existence check needs', () => {
    expect(metricNames('sum by (node) (increase(vfio_handoff_x_total{a="b"}[5m])) > 0 or absent(up)').sort()).toEqual(['up', 'vfio_handoff_x_total']);
    expect(metricNames('max by (p) (a and on (namespace, pod) (b == 1))').sort()).toEqual(['a', 'b']);
  });

  it.skipIf(!promtool.path)('passes promtool check rules', () => {
    const r = spawnSync(promtool.path ?? 'promtool', ['check', 'rules', join(REPO_ROOT, 'monitoring/alerts.yaml')], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toContain('SUCCESS');
    expect(r.status).toBe(0);
  });

  it.skipIf(!promtool.path)('passes its promtool unit tests (each rule fires and stays silent where it should)', () => {
    const r = spawnSync(promtool.path ?? 'promtool', ['test', 'rules', 'tests/alerts.test.yaml'], { cwd: join(REPO_ROOT, 'monitoring'), encoding: 'utf8' });
    expect(r.stdout + r.stderr).toContain('SUCCESS');
    expect(r.status).toBe(0);
    // Every alert is exercised by the unit tests, both firing and silent.
    const tests = parse(readFileSync(join(REPO_ROOT, 'monitoring/tests/alerts.test.yaml'), 'utf8')) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const r2 of rules) {
      expect(cases.some((c) => c.alertname === r2.alert && c.exp_alerts.length > 0), `${r2.alert} never fires in tests`).toBe(true);
      expect(cases.some((c) => c.alertname === r2.alert && c.exp_alerts.length === 0), `${r2.alert} never silent in tests`).toBe(true);
    }
  });

  it.skipIf(!promtool.path)('is caught by promtool when a rule is broken', () => {
    const r = spawnSync(promtool.path ?? 'promtool', ['check', 'rules'], { input: 'groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum by (\n', encoding: 'utf8' });
    expect(r.status).not.toBe(0);
  });
});

describe('monitoring/dashboard.json', () => {
  const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'monitoring/dashboard.json'), 'utf8')) as {
    uid: string;
    title: string;
    panels: { id: number; type: string; title: string; gridPos: { x: number; y: number; w: number; h: number }; targets?: { expr: string; refId: string }[] }[];
    templating: { list: { name: string }[] };
  };

  it('is a Grafana dashboard with unique panel ids and sane grid positions', () => {
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      if (p.type !== 'row') expect(p.targets?.length, p.title).toBeGreaterThan(0);
    }
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'namespace', 'node']);
  });

  it('queries only metrics that our registries export, and covers both agent and operator', async () => {
    const names = await exposedNames();
    const used = new Set<string>();
    for (const p of dashboard.panels) {
      for (const t of p.targets ?? []) {
        const m = metricNames(t.expr);
        expect(m.length, `${p.title}/${t.refId}`).toBeGreaterThan(0);
        for (const n of m) {
          expect(names.has(n), `${p.title}: ${n} is not exported`).toBe(true);
          used.add(n);
        }
      }
    }
    for (const n of ['vfio_handoff_gpus', 'vfio_handoff_devices', 'vfio_handoff_handoff_duration_seconds_bucket', 'vfio_handoff_operator_leader', 'vfio_handoff_framebuffer_state']) {
      expect(used.has(n), n).toBe(true);
    }
  });
});
