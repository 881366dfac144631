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
