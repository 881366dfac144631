/**
 * prom-client implementations of the recorder interfaces in ./recorders.ts.
 *
 * Every metric is registered on the Registry the caller passes (the composition root owns it), never on
 * prom-client's global register, so tests and several components in one process never share state.
 * Labels are bounded: free-form values from callers are mapped onto the closed vocabularies below.
 * No metric carries a PCI address: fleet alerts only need counts per phase/resource, and a per-GPU
 * series would multiply cardinality by every GPU in the fleet (the NodeGpuPassthrough status has the detail).
 */
import { Counter, Gauge, Histogram, collectDefaultMetrics } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Clock } from '../core/clock.js';
import { realClock } from '../core/clock.js';
import {
  FRAMEBUFFER_STATES,
  GPU_PHASES,
  HANDOFF_REASONS,
  REREGISTRATION_TRIGGERS,
} from './recorders.js';
import type { AgentRecorder, FramebufferState, GpuPhase, HandoffResult, OperatorRecorder } from './recorders.js';

export const METRIC_PREFIX = 'vfio_handoff_';

/** Every metric family name this module can register; tests check alert rules and dashboards against it. */
export const AGENT_METRIC_NAMES = [
  'vfio_handoff_gpus',
  'vfio_handoff_handoff_attempts_total',
  'vfio_handoff_handoff_failures_total',
  'vfio_handoff_handoff_duration_seconds',
  'vfio_handoff_handoff_steps_total',
  'vfio_handoff_last_success_timestamp_seconds',
  'vfio_handoff_devices',
  'vfio_handoff_plugin_registered',
  'vfio_handoff_plugin_reregistrations_total',
  'vfio_handoff_allocate_requests_total',
  'vfio_handoff_allocate_errors_total',
  'vfio_handoff_framebuffer_state',
  'vfio_handoff_consoles_bound',
] as const;

export const OPERATOR_METRIC_NAMES = [
  'vfio_handoff_operator_reconciles_total',
  'vfio_handoff_operator_reconcile_errors_total',
  'vfio_handoff_operator_reconcile_duration_seconds',
  'vfio_handoff_operator_queue_depth',
  'vfio_handoff_operator_policy_nodes_desired',
  'vfio_handoff_operator_policy_nodes_ready',
  'vfio_handoff_operator_policy_degraded',
  'vfio_handoff_operator_leader',
] as const;

/** Handoffs take from milliseconds (already bound) to tens of seconds (driver unbind waiting on a busy GPU). */
const HANDOFF_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const OPERATIONS = ['prepare', 'release'] as const;
const RESULTS: readonly HandoffResult[] = ['success', 'failure', 'rolled_back', 'noop'];
const STEP_OUTCOMES = ['done', 'skipped', 'failed'] as const;
const RECONCILE_RESULTS = ['success', 'error', 'requeue'] as const;

/** Maps a caller's value onto a closed vocabulary; unknown values collapse to 'other' so cardinality stays bounded. */
export function bounded<T extends string>(allowed: readonly T[], value: string): T | 'other' {
  return (allowed as readonly string[]).includes(value) ? (value as T) : 'other';
}

/**
 * Step kinds and resource/controller names come from our own code or admin configuration, but a bug must
 * not be able to explode the series count: keep them to Prometheus-safe identifiers of sane length.
 */
function safeName(value: string): string {
  return /^[A-Za-z0-9_.:/-]{1,63}$/.test(value) ? value : 'other';
}

export interface MetricsOptions {
  /** For the last-success timestamp; tests inject a fixed clock. */
  readonly clock?: Clock;
  /** Also register Node.js process metrics (CPU, memory, event-loop lag) with our prefix. */
  readonly processMetrics?: boolean;
}

export function createAgentMetrics(registry: Registry, options: MetricsOptions = {}): AgentRecorder {
  const clock = options.clock ?? realClock;
  const registers = [registry];
  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });

  const gpus = new Gauge({
    name: 'vfio_handoff_gpus',
    help: 'GPUs on this node by handoff phase (Host, Preparing, Ready, Releasing, Failed) and resource name ("" for GPUs left on the host).',
    labelNames: ['phase', 'resource'] as const,
    registers,
  });
  const attempts = new Counter({
    name: 'vfio_handoff_handoff_attempts_total',
    help: 'Finished prepare/release attempts by operation, result and reason code.',
    labelNames: ['operation', 'result', 'reason'] as const,
    registers,
  });
  // The reason-labelled series above only appear with their first failure, and increase() cannot see a
  // series' first sample; this one exists at 0 from the start, so alerts can use increase() on it.
  const failures = new Counter({
    name: 'vfio_handoff_handoff_failures_total',
    help: 'Prepare/release attempts that failed or were rolled back, by operation.',
    labelNames: ['operation'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'vfio_handoff_handoff_duration_seconds',
    help: 'Duration of prepare/release attempts in seconds.',
    labelNames: ['operation', 'result'] as const,
    buckets: HANDOFF_BUCKETS,
    registers,
  });
  const steps = new Counter({
    name: 'vfio_handoff_handoff_steps_total',
    help: 'Executed handoff plan steps by step kind and outcome.',
    labelNames: ['step', 'outcome'] as const,
    registers,
  });
  const lastSuccess = new Gauge({
    name: 'vfio_handoff_last_success_timestamp_seconds',
    help: 'Unix time of the last successful handoff by operation.',
    labelNames: ['operation'] as const,
    registers,
  });
  const devices = new Gauge({
    name: 'vfio_handoff_devices',
    help: 'Devices advertised to kubelet by resource and health (healthy, unhealthy).',
    labelNames: ['resource', 'health'] as const,
    registers,
  });
  const registered = new Gauge({
    name: 'vfio_handoff_plugin_registered',
    help: 'Whether the device plugin for a resource is registered with kubelet (1) or not (0).',
    labelNames: ['resource'] as const,
    registers,
  });
  const reregistrations = new Counter({
    name: 'vfio_handoff_plugin_reregistrations_total',
    help: 'Device plugin re-registrations with kubelet by resource and trigger.',
    labelNames: ['resource', 'trigger'] as const,
    registers,
  });
  const allocations = new Counter({
    name: 'vfio_handoff_allocate_requests_total',
    help: 'Allocate calls from kubelet by resource.',
    labelNames: ['resource'] as const,
    registers,
  });
  const allocationErrors = new Counter({
    name: 'vfio_handoff_allocate_errors_total',
    help: 'Allocate calls answered with an error by resource.',
    labelNames: ['resource'] as const,
    registers,
  });
  const framebuffer = new Gauge({
    name: 'vfio_handoff_framebuffer_state',
    help: 'Firmware framebuffer state on this node, one-hot over state (host, released, none).',
    labelNames: ['state'] as const,
    registers,
  });
  const consoles = new Gauge({
    name: 'vfio_handoff_consoles_bound',
    help: 'Virtual consoles bound to a framebuffer console (fbcon) on this node.',
    registers,
  });

  // Series that exist from the first scrape, so rate()/increase() see a zero before the first event and
  // absent() does not fire on a healthy agent that has not handed anything over yet.
  for (const operation of OPERATIONS) {
    for (const result of RESULTS) duration.zero({ operation, result });
    failures.inc({ operation }, 0);
  }

  return {
    handoffFinished(operation, result, reason, durationSeconds) {
      const op = bounded(OPERATIONS, operation);
      const res = bounded(RESULTS, result);
      // Success and no-op carry no reason, whatever spelling the caller uses for "none" ('OK', '').
      const why = res === 'success' || res === 'noop' ? 'none' : bounded(HANDOFF_REASONS, reason);
      attempts.inc({ operation: op, result: res, reason: why });
      if (res === 'failure' || res === 'rolled_back') failures.inc({ operation: op });
      if (Number.isFinite(durationSeconds) && durationSeconds >= 0) duration.observe({ operation: op, result: res }, durationSeconds);
      if (res === 'success') lastSuccess.set({ operation: op }, clock.now() / 1000);
    },
    stepCompleted(step, outcome) {
      steps.inc({ step: safeName(step), outcome: bounded(STEP_OUTCOMES, outcome) });
    },
    registered(resource, ok) {
      registered.set({ resource: safeName(resource) }, ok ? 1 : 0);
    },
    reregistered(resource, trigger) {
      reregistrations.inc({ resource: safeName(resource), trigger: bounded(REREGISTRATION_TRIGGERS, trigger) });
    },
    allocate(resource, ok) {
      const labels = { resource: safeName(resource) };
      allocations.inc(labels);
      // Keep the error series present at 0 so error-ratio queries work before the first error.
      allocationErrors.inc(labels, ok ? 0 : 1);
    },
    devices(resource, healthy, unhealthy) {
      const r = safeName(resource);
      devices.set({ resource: r, health: 'healthy' }, healthy);
      devices.set({ resource: r, health: 'unhealthy' }, unhealthy);
    },
    gpuPhases(counts) {
      // A snapshot replaces the previous one: a GPU that left 'Failed' must not leave a stale 1 behind.
      gpus.reset();
      for (const phase of GPU_PHASES) gpus.set({ phase, resource: '' }, 0);
      const sums = new Map<string, { phase: GpuPhase | 'other'; resource: string; count: number }>();
      for (const c of counts) {
        const phase = bounded(GPU_PHASES, c.phase);
        const resource = c.resource === '' ? '' : safeName(c.resource);
        const key = `${phase}\u0000${resource}`;
        const prev = sums.get(key);
        sums.set(key, { phase, resource, count: (prev?.count ?? 0) + c.count });
      }
      for (const s of sums.values()) gpus.set({ phase: s.phase, resource: s.resource }, s.count);
    },
    framebuffer(state) {
      const current: FramebufferState | 'other' = bounded(FRAMEBUFFER_STATES, state);
      for (const s of FRAMEBUFFER_STATES) framebuffer.set({ state: s }, s === current ? 1 : 0);
    },
    consolesBound(count) {
      consoles.set(count);
    },
  };
}

export function createOperatorMetrics(registry: Registry, options: MetricsOptions = {}): OperatorRecorder {
  const registers = [registry];
  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });

  const reconciles = new Counter({
    name: 'vfio_handoff_operator_reconciles_total',
    help: 'Reconciles by controller and result (success, error, requeue).',
    labelNames: ['controller', 'result'] as const,
    registers,
  });
  const errors = new Counter({
    name: 'vfio_handoff_operator_reconcile_errors_total',
    help: 'Reconciles that ended in an error, by controller.',
    labelNames: ['controller'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'vfio_handoff_operator_reconcile_duration_seconds',
    help: 'Reconcile duration in seconds by controller.',
    labelNames: ['controller'] as const,
    buckets: RECONCILE_BUCKETS,
    registers,
  });
  const queue = new Gauge({
    name: 'vfio_handoff_operator_queue_depth',
    help: 'Keys waiting in the work queue by controller.',
    labelNames: ['controller'] as const,
    registers,
  });
  const desired = new Gauge({
    name: 'vfio_handoff_operator_policy_nodes_desired',
    help: 'Nodes a GpuPassthrough policy selects.',
    labelNames: ['policy'] as const,
    registers,
  });
  const ready = new Gauge({
    name: 'vfio_handoff_operator_policy_nodes_ready',
    help: 'Nodes on which every GPU of a GpuPassthrough policy is Ready.',
    labelNames: ['policy'] as const,
    registers,
  });
  const degraded = new Gauge({
    name: 'vfio_handoff_operator_policy_degraded',
    help: 'Whether a GpuPassthrough policy has condition Degraded=True (1) or not (0).',
    labelNames: ['policy'] as const,
    registers,
  });
  const leader = new Gauge({
    name: 'vfio_handoff_operator_leader',
    help: 'Whether this operator replica holds the leader lease (1) or not (0).',
    registers,
  });
  // Every replica reports 0 until it wins the lease, so "no leader" is sum()==0, not a missing series.
  leader.set(0);

  return {
    reconciled(controller, result, durationSeconds) {
      const c = safeName(controller);
      const r = bounded(RECONCILE_RESULTS, result);
      reconciles.inc({ controller: c, result: r });
      errors.inc({ controller: c }, r === 'error' ? 1 : 0);
      if (Number.isFinite(durationSeconds) && durationSeconds >= 0) duration.observe({ controller: c }, durationSeconds);
    },
    queueDepth(controller, depth) {
      queue.set({ controller: safeName(controller) }, depth);
    },
    leader(isLeader) {
      leader.set(isLeader ? 1 : 0);
    },
    policy(name, state) {
      const policy = safeName(name);
      desired.set({ policy }, state.nodesDesired);
      ready.set({ policy }, state.nodesReady);
      degraded.set({ policy }, state.degraded ? 1 : 0);
    },
    policyRemoved(name) {
      // A deleted policy must stop being reported, or its last Degraded=1 would keep the alert firing.
      const policy = safeName(name);
      desired.remove({ policy });
      ready.remove({ policy });
      degraded.remove({ policy });
    },
  };
}
