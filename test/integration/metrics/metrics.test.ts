import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { Clock } from '../../../src/core/clock.js';
import {
  AGENT_METRIC_NAMES,
  OPERATOR_METRIC_NAMES,
  createAgentMetrics,
  createOperatorMetrics,
} from '../../../src/metrics/metrics.js';

const fixedClock = (ms: number): Clock => ({ now: () => ms, sleep: () => Promise.resolve() });

/** Returns the sample lines of the exposition text (no HELP/TYPE comments). */
async function samples(registry: Registry): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}

function value(lines: readonly string[], series: string): number | undefined {
  const line = lines.find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('createAgentMetrics', () => {
  it('registers on the injected registry only, with HELP and TYPE for every family', async () => {
    const registry = new Registry();
    createAgentMetrics(registry);
    const text = await registry.metrics();
    for (const name of AGENT_METRIC_NAMES) {
      expect(text).toContain(`# HELP ${name} `);
      expect(text).toMatch(new RegExp(`# TYPE ${name} (counter|gauge|histogram)`));
    }
    // A second set on a second registry must not collide (no global register).
    expect(() => createAgentMetrics(new Registry())).not.toThrow();
  });

  it('counts handoff attempts by operation, result and bounded reason', async () => {
    const registry = new Registry();
    const sut = createAgentMetrics(registry, { clock: fixedClock(1_700_000_000_500) });
    sut.handoffFinished('prepare', 'success', 'OK', 0.3);
    sut.handoffFinished('prepare', 'rolled_back', 'HOST_WRITE_FAILED', 2);
    sut.handoffFinished('release', 'failure', 'some free text with 0000:01:00.0', 1);
    const lines = await samples(registry);
    expect(value(lines, 'vfio_handoff_handoff_attempts_total{operation="prepare",result="success",reason="none"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_handoff_attempts_total{operation="prepare",result="rolled_back",reason="HOST_WRITE_FAILED"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_handoff_attempts_total{operation="release",result="failure",reason="other"}')).toBe(1);
    expect(lines.join('\n')).not.toContain('0000:01:00.0');
    expect(value(lines, 'vfio_handoff_handoff_failures_total{operation="prepare"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_handoff_failures_total{operation="release"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_handoff_duration_seconds_bucket{le="0.5",operation="prepare",result="success"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_handoff_duration_seconds_count{operation="prepare",result="rolled_back"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_last_success_timestamp_seconds{operation="prepare"}')).toBe(1_700_000_000.5);
    expect(value(lines, 'vfio_handoff_last_success_timestamp_seconds{operation="release"}')).toBeUndefined();
  });

  it('exposes the failure counter at zero before any failure so increase() sees the first one', async () => {
    const registry = new Registry();
    createAgentMetrics(registry);
    const lines = await samples(registry);
    expect(value(lines, 'vfio_handoff_handoff_failures_total{operation="prepare"}')).toBe(0);
    expect(value(lines, 'vfio_handoff_handoff_failures_total{operation="release"}')).toBe(0);
  });

  it('replaces the GPU phase snapshot so a GPU leaving Failed drops to zero', async () => {
    const registry = new Registry();
    const sut = createAgentMetrics(registry);
    sut.gpuPhases([
      { phase: 'Failed', resource: 'handoff.dev/rtx4000', count: 1 },
      { phase: 'Ready', resource: 'handoff.dev/rtx4000', count: 1 },
      { phase: 'Ready', resource: 'handoff.dev/rtx4000', count: 2 },
      { phase: 'Host', resource: '', count: 1 },
    ]);
    let lines = await samples(registry);
    expect(value(lines, 'vfio_handoff_gpus{phase="Failed",resource="handoff.dev/rtx4000"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_gpus{phase="Ready",resource="handoff.dev/rtx4000"}')).toBe(3);
    expect(value(lines, 'vfio_handoff_gpus{phase="Host",resource=""}')).toBe(1);
    sut.gpuPhases([{ phase: 'Ready', resource: 'handoff.dev/rtx4000', count: 4 }]);
    lines = await samples(registry);
    expect(value(lines, 'vfio_handoff_gpus{phase="Failed",resource="handoff.dev/rtx4000"}')).toBeUndefined();
    expect(value(lines, 'vfio_handoff_gpus{phase="Failed",resource=""}')).toBe(0);
    expect(value(lines, 'vfio_handoff_gpus{phase="Ready",resource="handoff.dev/rtx4000"}')).toBe(4);
  });

  it('records plugin registration, re-registration triggers, Allocate and device health', async () => {
    const registry = new Registry();
    const sut = createAgentMetrics(registry);
    sut.registered('handoff.dev/gpu', true);
    sut.registered('handoff.dev/other', false);
    sut.reregistered('handoff.dev/gpu', 'kubelet_restart');
    sut.reregistered('handoff.dev/gpu', 'cosmic rays');
    sut.allocate('handoff.dev/gpu', true);
    sut.allocate('handoff.dev/gpu', false);
    sut.allocate('handoff.dev/gpu', true);
    sut.devices('handoff.dev/gpu', 3, 1);
    const lines = await samples(registry);
    expect(value(lines, 'vfio_handoff_plugin_registered{resource="handoff.dev/gpu"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_plugin_registered{resource="handoff.dev/other"}')).toBe(0);
    expect(value(lines, 'vfio_handoff_plugin_reregistrations_total{resource="handoff.dev/gpu",trigger="kubelet_restart"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_plugin_reregistrations_total{resource="handoff.dev/gpu",trigger="other"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_allocate_requests_total{resource="handoff.dev/gpu"}')).toBe(3);
    expect(value(lines, 'vfio_handoff_allocate_errors_total{resource="handoff.dev/gpu"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_devices{resource="handoff.dev/gpu",health="healthy"}')).toBe(3);
    expect(value(lines, 'vfio_handoff_devices{resource="handoff.dev/gpu",health="unhealthy"}')).toBe(1);
  });

  it('reports the framebuffer state one-hot and the bound console count', async () => {
    const registry = new Registry();
    const sut = createAgentMetrics(registry);
    sut.framebuffer('host');
    sut.consolesBound(1);
    sut.framebuffer('released');
    sut.consolesBound(0);
    const lines = await samples(registry);
    expect(value(lines, 'vfio_handoff_framebuffer_state{state="host"}')).toBe(0);
    expect(value(lines, 'vfio_handoff_framebuffer_state{state="released"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_framebuffer_state{state="none"}')).toBe(0);
    expect(value(lines, 'vfio_handoff_consoles_bound')).toBe(0);
  });

  it('keeps unsafe step and resource names out of label values', async () => {
    const registry = new Registry();
    const sut = createAgentMetrics(registry);
    sut.stepCompleted('unbind', 'done');
    sut.stepCompleted('x'.repeat(200), 'failed');
    sut.devices('bad"resource\nname', 1, 0);
    const lines = await samples(registry);
    expect(value(lines, 'vfio_handoff_handoff_steps_total{step="unbind",outcome="done"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_handoff_steps_total{step="other",outcome="failed"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_devices{resource="other",health="healthy"}')).toBe(1);
  });

  it('adds prefixed process metrics only when asked', async () => {
    const withProcess = new Registry();
    createAgentMetrics(withProcess, { processMetrics: true });
    expect(await withProcess.metrics()).toContain('vfio_handoff_process_cpu_seconds_total');
    const without = new Registry();
    createAgentMetrics(without);
    expect(await without.metrics()).not.toContain('process_cpu');
  });
});

describe('createOperatorMetrics', () => {
  it('registers every operator family and starts as a non-leader', async () => {
    const registry = new Registry();
    createOperatorMetrics(registry);
    const text = await registry.metrics();
    for (const name of OPERATOR_METRIC_NAMES) expect(text).toContain(`# TYPE ${name} `);
    expect(value(await samples(registry), 'vfio_handoff_operator_leader')).toBe(0);
  });

  it('counts reconciles and errors, queue depth, leader, and per-policy node counts', async () => {
    const registry = new Registry();
    const sut = createOperatorMetrics(registry);
    sut.reconciled('gpupassthrough', 'success', 0.01);
    sut.reconciled('gpupassthrough', 'error', 0.2);
    sut.reconciled('gpupassthrough', 'requeue', 0.02);
    sut.queueDepth('gpupassthrough', 7);
    sut.leader(true);
    sut.policy('lab-gpus', { nodesDesired: 3, nodesReady: 2, degraded: true });
    const lines = await samples(registry);
    expect(value(lines, 'vfio_handoff_operator_reconciles_total{controller="gpupassthrough",result="error"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_operator_reconciles_total{controller="gpupassthrough",result="success"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_operator_reconcile_errors_total{controller="gpupassthrough"}')).toBe(1);
    expect(value(lines, 'vfio_handoff_operator_reconcile_duration_seconds_count{controller="gpupassthrough"}')).toBe(3);
    expect(value(lines, 'vfio_handoff_operator_queue_depth{controller="gpupassthrough"}')).toBe(7);
    expect(value(lines, 'vfio_handoff_operator_leader')).toBe(1);
    expect(value(lines, 'vfio_handoff_operator_policy_nodes_desired{policy="lab-gpus"}')).toBe(3);
    expect(value(lines, 'vfio_handoff_operator_policy_nodes_ready{policy="lab-gpus"}')).toBe(2);
    expect(value(lines, 'vfio_handoff_operator_policy_degraded{policy="lab-gpus"}')).toBe(1);
  });

  it('drops every series of a removed policy', async () => {
    const registry = new Registry();
    const sut = createOperatorMetrics(registry);
    sut.policy('gone', { nodesDesired: 1, nodesReady: 0, degraded: true });
    sut.policy('kept', { nodesDesired: 1, nodesReady: 1, degraded: false });
    sut.policyRemoved('gone');
    const text = await registry.metrics();
    expect(text).not.toContain('policy="gone"');
    expect(text).toContain('vfio_handoff_operator_policy_degraded{policy="kept"} 0');
  });
});
