import { Counter, Histogram, type Registry } from 'prom-client';
import type { DraOperation, DraRecorder, DraResult } from '../dra/driver.js';

const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * DRA claim metrics (the DRA front end's counterpart of the device plugin's Allocate counters):
 * `vfio_handoff_dra_claims_total{operation,result}` and
 * `vfio_handoff_dra_claim_duration_seconds{operation,result}`. Both label sets are closed vocabularies.
 */
export function createDraMetrics(registry: Registry): DraRecorder {
  const registers = [registry];
  const total = new Counter({
    name: 'vfio_handoff_dra_claims_total',
    help: 'ResourceClaims prepared/unprepared by the DRA kubelet plugin, by operation and result (success, error, noop = answered from the checkpoint or nothing to undo).',
    labelNames: ['operation', 'result'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'vfio_handoff_dra_claim_duration_seconds',
    help: 'Duration of one claim\u2019s NodePrepareResources/NodeUnprepareResources handling in seconds.',
    labelNames: ['operation', 'result'] as const,
    buckets: BUCKETS,
    registers,
  });
  for (const operation of ['prepare', 'unprepare'] as const) for (const result of ['success', 'error', 'noop'] as const) total.labels(operation, result).inc(0);
  return {
    claim(operation: DraOperation, result: DraResult, seconds: number) {
      total.labels(operation, result).inc();
      duration.labels(operation, result).observe(seconds);
    },
  };
}
