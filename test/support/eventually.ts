import { vi } from 'vitest';

/**
 * Retries an assertion until it passes or the timeout runs out (vitest's own waitFor, polling every 5 ms).
 * The generous default is for busy CI machines: a passing check returns at once, only a failure waits.
 */
export function eventually(check: () => void, timeoutMs = 15_000): Promise<void> {
  return vi.waitFor(check, { timeout: timeoutMs, interval: 5 });
}
