import { describe, expect, it } from 'vitest';
import { backoffDelay } from './backoff.js';

describe(backoffDelay.name, () => {
  const b = { initialMs: 100, maxMs: 1000 };
  it.each([
    [0, 100],
    [1, 200],
    [3, 800],
    [4, 1000],
    [10_000, 1000],
    [-3, 100],
    [Number.MAX_SAFE_INTEGER, 1000],
  ])('attempt %d without jitter (random 0.5) → %d ms', (attempt, want) => {
    expect(backoffDelay(attempt, b, () => 0.5)).toBe(want);
  });
  it('jitters within ±20 % of the step, the cap included', () => {
    expect(backoffDelay(0, b, () => 0)).toBe(80);
    expect(backoffDelay(0, b, () => 0.999999)).toBe(120);
    expect(backoffDelay(50, b, () => 0)).toBe(800);
    expect(backoffDelay(50, b, () => 0.999999)).toBe(1200);
  });
  it('two clients at the same attempt wait different times (the point of jitter)', () => {
    let seed = 1;
    const lcg = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const delays = new Set(Array.from({ length: 20 }, () => backoffDelay(5, { initialMs: 800, maxMs: 30_000 }, lcg)));
    expect(delays.size).toBeGreaterThan(10);
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(20_480);
      expect(d).toBeLessThanOrEqual(30_720);
    }
  });
});
