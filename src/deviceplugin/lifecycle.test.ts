import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../core/backoff.js';

describe(backoffDelay.name, () => {
  const b = { initialMs: 100, maxMs: 1000 };
  it('doubles per attempt and caps, with ±20 % jitter', () => {
    expect([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, b, () => 0.5))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(backoffDelay(0, b, () => 0)).toBe(80);
    expect(backoffDelay(20, b, () => 1)).toBe(1200);
  });
});
