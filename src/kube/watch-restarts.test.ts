import { describe, expect, it } from 'vitest';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { KubeApiError } from '../core/errors.js';
import { ResourceExpiredError } from './port.js';
import { WatchRestartLog, WatchRestarts } from './watch-restarts.js';

function manualClock(): Clock & { t: number } {
  const c = { t: 0, now: () => c.t, sleep: async (ms: number) => void (c.t += ms) };
  return c;
}

function recordingLogger(lines: string[]): Logger {
  const l = {
    info: (_o: object, m: string) => lines.push(`info ${m}`),
    warn: (_o: object, m: string) => lines.push(`warn ${m}`),
    error: (_o: object, m: string) => lines.push(`error ${m}`),
    debug: () => undefined,
    child: () => l,
  };
  return l as unknown as Logger;
}

describe('WatchRestarts (client-go reflector pacing)', () => {
  const mid = () => 0.5; // jitter factor 1.0

  it('a watch that ends at once without an event backs off 800 ms doubling to 30 s', async () => {
    const clock = manualClock();
    const p = new WatchRestarts({ clock, random: mid });
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) {
      waits.push(p.delayMs());
      await p.wait();
      p.watchStarted();
      expect(p.watchEnded(0)).toBe('short');
    }
    // The first backoff (800 ms) is below the 1 s minimum interval between watch starts.
    expect(waits).toEqual([0, 1000, 1600, 3200, 6400, 12800, 25600, 30000]);
  });

  it('a successful list does not reset the backoff; only a watch open for resetAfterMs does', async () => {
    const clock = manualClock();
    const p = new WatchRestarts({ clock, random: mid });
    for (let i = 0; i < 3; i++) {
      await p.wait();
      p.watchStarted();
      p.watchEnded(0, new KubeApiError('watch failed', 500));
    }
    expect(p.attempts).toBe(3);
    await p.wait(); // the list in between succeeds: nothing to report to the pacing
    p.watchStarted();
    clock.t += 5_000;
    expect(p.watchEnded(3)).toBe('healthy'); // events, but not open for 30 s
    expect(p.attempts).toBe(3);
    await p.wait();
    p.watchStarted();
    clock.t += 30_000;
    expect(p.watchEnded(0)).toBe('healthy');
    expect(p.attempts).toBe(0);
  });

  it('keeps a minimum interval between watch starts even after healthy watches', async () => {
    const clock = manualClock();
    const p = new WatchRestarts({ clock, random: mid }, { minIntervalMs: 1_000 });
    p.watchStarted();
    clock.t += 10;
    expect(p.watchEnded(5)).toBe('healthy'); // events, then a clean end
    expect(p.delayMs()).toBeGreaterThanOrEqual(990);
  });

  it('classifies 410 and 403 and counts them as failures', () => {
    const clock = manualClock();
    const p = new WatchRestarts({ clock, random: mid });
    p.watchStarted();
    expect(p.watchEnded(0, new ResourceExpiredError('gone'))).toBe('expired');
    p.watchStarted();
    expect(p.watchEnded(0, Object.assign(new Error('Forbidden'), { statusCode: 403 }))).toBe('forbidden');
    expect(p.attempts).toBe(2);
  });
});

describe('WatchRestartLog', () => {
  it('names a missing permission once, and says a watch keeps ending at most once a minute', () => {
    const clock = manualClock();
    const lines: string[] = [];
    const log = new WatchRestartLog({ clock, logger: recordingLogger(lines) }, 'nodegpupassthroughs.handoff.dev');
    for (let i = 0; i < 50; i++) log.restart('forbidden', 30_000);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/lacks the "watch" verb on nodegpupassthroughs\.handoff\.dev/);
    lines.length = 0;
    for (let i = 0; i < 100; i++) {
      log.restart('short', 1_000);
      clock.t += 1_000;
    }
    expect(lines.filter((l) => /keeps ending/.test(l))).toHaveLength(2); // t = 0 s and t = 60 s
    log.healthy();
    expect(lines.at(-1)).toBe('info watch works again');
    log.restart('forbidden', 800);
    expect(lines.at(-1)).toMatch(/lacks the "watch" verb/); // news again after it worked
  });
});
