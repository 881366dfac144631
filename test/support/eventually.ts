import { vi } from 'vitest';

/** Retries an assertion until it passes or the timeout runs out (vitest's own waitFor, polling every 5 ms). */
export function eventually(check: () => void, timeoutMs = 3000): Promise<void> {
  return vi.waitFor(check, { timeout: timeoutMs, interval: 5 });
}
