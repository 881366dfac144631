import { HandoffError, type ErrorCode } from '../core/errors.js';

/** Documented exit codes (README "Exit codes"); scripts and the e2e tests rely on them. */
export const EXIT = {
  OK: 0,
  INTERNAL: 1,
  INVALID_ARGUMENT: 2,
  NOT_FOUND: 3,
  BLOCKED: 4,
  HOST_FAILURE: 5,
  IN_USE: 6,
  JOURNAL: 7,
  ROLLBACK_FAILED: 8,
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: EXIT.INVALID_ARGUMENT,
  PROFILE_INVALID: EXIT.INVALID_ARGUMENT,
  NOT_FOUND: EXIT.NOT_FOUND,
  NOT_A_GPU: EXIT.NOT_FOUND,
  BLOCKED: EXIT.BLOCKED,
  IN_USE: EXIT.IN_USE,
  HOST_READ_FAILED: EXIT.HOST_FAILURE,
  HOST_WRITE_FAILED: EXIT.HOST_FAILURE,
  TIMEOUT: EXIT.HOST_FAILURE,
  VERIFY_FAILED: EXIT.HOST_FAILURE,
  JOURNAL: EXIT.JOURNAL,
  ROLLBACK_FAILED: EXIT.ROLLBACK_FAILED,
};

type Outcome = { readonly outcome: string; readonly steps: readonly { outcome: string }[]; readonly rollback?: readonly { outcome: string }[] };

/**
 * The exit code of a finished prepare/release from its group outcomes. A recovery of an earlier run
 * counts when any of its steps failed: a run never exits 0 after a recovery step was refused.
 */
export function exitCodeForOutcomes(outcomes: readonly Outcome[], recovered: readonly Outcome[] = []): number {
  const all = [...recovered, ...outcomes];
  if (all.some((o) => o.outcome === 'rollback_failed')) return EXIT.ROLLBACK_FAILED;
  if (outcomes.some((o) => o.outcome === 'failed' || o.outcome === 'rolled_back')) return EXIT.HOST_FAILURE;
  if (recovered.some((o) => [...o.steps, ...(o.rollback ?? [])].some((s) => s.outcome === 'failed'))) return EXIT.HOST_FAILURE;
  return EXIT.OK;
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof HandoffError) return BY_CODE[err.code] ?? EXIT.INTERNAL;
  return EXIT.INTERNAL;
}
