/**
 * Capped exponential backoff with ±20 % jitter, the one retry pacing used across the project: the device
 * plugin's re-registration, the informers' list/watch restarts (client-go's reflector: 800 ms doubling to
 * 30 s) and the work queue's per-key requeue (client-go's rate limiter: 5 ms doubling to 60 s). Jitter
 * keeps many clients restarted at once (a kubelet or API server coming back) from retrying in lockstep.
 */

export interface Backoff {
  /** Delay of attempt 0 before jitter, ms. */
  readonly initialMs: number;
  /** Cap before jitter, ms. */
  readonly maxMs: number;
}

/**
 * Delay before retry number `attempt` (0-based), ms: `min(maxMs, initialMs·2^attempt)` scaled by a
 * factor in [0.8, 1.2) drawn from `random` (in [0, 1)), rounded to whole ms. A negative attempt counts
 * as 0; the exponent stops growing at 30 so huge attempt counts stay finite.
 */
export function backoffDelay(attempt: number, b: Backoff, random: () => number = Math.random): number {
  const base = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(Math.max(0, attempt), 30));
  return Math.round(base * (0.8 + 0.4 * random()));
}
