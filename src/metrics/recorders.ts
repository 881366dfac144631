import { ERROR_CODES } from '../core/errors.js';
import { REASON_CODES } from '../api/v1alpha1/index.js';
import type { GpuPhase } from '../api/v1alpha1/index.js';
/**
 * Narrow recorder interfaces: domain modules report through these and never import prom-client.
 * src/metrics/metrics.ts implements them over an injected prom-client Registry.
 */
export type HandoffResult = 'success' | 'failure' | 'rolled_back' | 'noop';

export interface HandoffRecorder {
  /** One prepare/release attempt finished. `reason` is an error/verdict code from a closed set. */
  handoffFinished(operation: 'prepare' | 'release', result: HandoffResult, reason: string, durationSeconds: number): void;
  stepCompleted(step: string, outcome: 'done' | 'skipped' | 'failed'): void;
}

export interface PluginRecorder {
  registered(resource: string, ok: boolean): void;
  reregistered(resource: string, trigger: string): void;
  allocate(resource: string, ok: boolean): void;
  devices(resource: string, healthy: number, unhealthy: number): void;
}

export interface ReconcileRecorder {
  reconciled(controller: string, result: 'success' | 'error' | 'requeue', durationSeconds: number): void;
  queueDepth(controller: string, depth: number): void;
  leader(isLeader: boolean): void;
}

export const noopHandoffRecorder: HandoffRecorder = {
  handoffFinished: () => undefined,
  stepCompleted: () => undefined,
};
export const noopPluginRecorder: PluginRecorder = {
  registered: () => undefined,
  reregistered: () => undefined,
  allocate: () => undefined,
  devices: () => undefined,
};
export const noopReconcileRecorder: ReconcileRecorder = {
  reconciled: () => undefined,
  queueDepth: () => undefined,
  leader: () => undefined,
};

// ---------------------------------------------------------------------------------------------
// Closed label vocabularies. Metric labels must stay bounded: whatever a caller passes that is not
// in these lists is recorded as 'other' by src/metrics/metrics.ts, never as free text.
// ---------------------------------------------------------------------------------------------

/** Per-GPU phases, as in NodeGpuPassthrough status.gpus[].phase (one vocabulary: the CRD's). */
export { GPU_PHASES, type GpuPhase } from '../api/v1alpha1/index.js';

/**
 * Reason codes a handoff attempt may finish with: 'none' for success, the error codes of
 * src/core/errors.ts, and the inspect verdict reason codes. Anything else becomes 'other'.
 */
export const HANDOFF_REASONS = ['none', ...ERROR_CODES, ...REASON_CODES, 'other'] as const;
export type HandoffReason = (typeof HANDOFF_REASONS)[number];

/** Why the device plugin registered with kubelet again. */
export const REREGISTRATION_TRIGGERS = ['kubelet_restart', 'socket_removed', 'stream_broken', 'signal', 'retry', 'devices_changed', 'other'] as const;
export type ReregistrationTrigger = (typeof REREGISTRATION_TRIGGERS)[number];

/**
 * State of the firmware framebuffer (efifb/simpledrm/vesafb) on this node:
 * 'host' = registered and driven on the host, 'released' = we removed it to hand its GPU over,
 * 'none' = the node has none (headless, or `nofb`/`video=efifb:off`).
 */
export const FRAMEBUFFER_STATES = ['host', 'released', 'none'] as const;
export type FramebufferState = (typeof FRAMEBUFFER_STATES)[number];

/** The agent's view of its GPUs, published as whole snapshots so that vanished combinations drop to zero. */
export interface GpuStateRecorder {
  gpuPhases(counts: readonly { phase: GpuPhase; resource: string; count: number }[]): void;
}

/** Host console state: whether the firmware framebuffer and fbcon are still on the host. */
export interface HostConsoleRecorder {
  framebuffer(state: FramebufferState): void;
  /** Number of virtual consoles bound to a framebuffer console (fbcon). */
  consolesBound(count: number): void;
}

/** Operator view of one GpuPassthrough policy. Policy names are cluster objects: bounded by what admins create. */
export interface PolicyRecorder {
  policy(name: string, state: { nodesDesired: number; nodesReady: number; degraded: boolean }): void;
  policyRemoved(name: string): void;
}

export type AgentRecorder = HandoffRecorder & PluginRecorder & GpuStateRecorder & HostConsoleRecorder;
export type OperatorRecorder = ReconcileRecorder & PolicyRecorder;

export const noopGpuStateRecorder: GpuStateRecorder = { gpuPhases: () => undefined };
export const noopHostConsoleRecorder: HostConsoleRecorder = { framebuffer: () => undefined, consolesBound: () => undefined };
export const noopPolicyRecorder: PolicyRecorder = { policy: () => undefined, policyRemoved: () => undefined };
