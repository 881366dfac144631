import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { ConflictError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { WorkQueue } from '../../../src/kube/work-queue.js';
import { eventually } from '../../support/eventually.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


function makeSut() {
  const results: string[] = [];
  const depths: number[] = [];
  const recorder = {
    reconciled: (_c: string, r: 'success' | 'error' | 'requeue') => void results.push(r),
    queueDepth: (_c: string, d: number) => void depths.push(d),
  };
  const sut = new WorkQueue({ clock: realClock, logger: silentLogger, recorder, random: () => 0.5 }, { name: 'test', backoff: { initialMs: 10, maxMs: 40 } });
  return { sut, results, depths };
}

describe(WorkQueue.name, () => {
  it('collapses repeated adds of a waiting key into one reconcile', async () => {
    const { sut, depths } = makeSut();
    const calls: string[] = [];
    sut.add('a');
    sut.add('a');
    sut.add('b');
    sut.add('a');
    expect(sut.depth()).toBe(2);
    expect(depths.at(-1)).toBe(2);
    const ac = new AbortController();
    const run = sut.run(async (k) => void calls.push(k), { workers: 2, signal: ac.signal });
    await eventually(() => expect(calls.sort()).toEqual(['a', 'b']));
    await sleep(30);
    expect(calls).toHaveLength(2);
    expect(depths.at(-1)).toBe(0);
    ac.abort();
    await run;
  });

  it('never runs one key twice at once, and reruns a key added while it ran', async () => {
    const { sut } = makeSut();
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    const ac = new AbortController();
    const run = sut.run(
      async () => {
        active++;
        runs++;
        maxActive = Math.max(maxActive, active);
        await sleep(30);
        active--;
      },
      { workers: 4, signal: ac.signal },
    );
    sut.add('a');
    await eventually(() => expect(sut.inFlight()).toBe(1));
    sut.add('a'); // arrives mid-reconcile
    sut.add('a');
    await eventually(() => expect(runs).toBe(2));
    await sleep(60);
    expect(runs).toBe(2);
    expect(maxActive).toBe(1);
    ac.abort();
    await run;
  });

  it('runs different keys in parallel up to the worker count', async () => {
    const { sut } = makeSut();
    let active = 0;
    let maxActive = 0;
    const ac = new AbortController();
    for (const k of ['a', 'b', 'c', 'd', 'e']) sut.add(k);
    const run = sut.run(
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await sleep(20);
        active--;
      },
      { workers: 3, signal: ac.signal },
    );
    await eventually(() => expect(sut.depth() + sut.inFlight()).toBe(0));
    expect(maxActive).toBe(3);
    ac.abort();
    await run;
  });

  it('requeues on ConflictError as a requeue, not an error, and succeeds on the fresh read', async () => {
    const { sut, results } = makeSut();
    let attempts = 0;
    const ac = new AbortController();
    sut.add('a');
    const run = sut.run(
      async () => {
        attempts++;
        if (attempts < 3) throw new ConflictError('stale resourceVersion');
      },
      { workers: 1, signal: ac.signal },
    );
    await eventually(() => expect(results).toEqual(['requeue', 'requeue', 'success']));
    expect(sut.retries('a')).toBe(0); // success forgets the backoff
    ac.abort();
    await run;
  });

  it('backs failures off exponentially per key', async () => {
    const { sut, results } = makeSut();
    const times: number[] = [];
    const ac = new AbortController();
    sut.add('a');
    const run = sut.run(
      async () => {
        times.push(Date.now());
        throw new Error('boom');
      },
      { workers: 1, signal: ac.signal },
    );
    await eventually(() => expect(times.length).toBeGreaterThanOrEqual(4));
    ac.abort();
    await run;
    expect(results.slice(0, 4)).toEqual(['error', 'error', 'error', 'error']);
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    // 10, 20, 40 ms (capped at 40) with jitter fixed at the midpoint; timers may only fire late.
    expect(gaps[0]).toBeGreaterThanOrEqual(9);
    expect(gaps[1]).toBeGreaterThanOrEqual(19);
    expect(gaps[2]).toBeGreaterThanOrEqual(39);
  });

  it('honours requeueAfterMs', async () => {
    const { sut } = makeSut();
    const times: number[] = [];
    const ac = new AbortController();
    sut.add('a');
    const run = sut.run(
      async () => {
        times.push(Date.now());
        return times.length < 2 ? { requeueAfterMs: 50 } : undefined;
      },
      { workers: 1, signal: ac.signal },
    );
    await eventually(() => expect(times).toHaveLength(2));
    expect((times[1] as number) - (times[0] as number)).toBeGreaterThanOrEqual(49);
    expect(sut.delayedCount()).toBe(0);
    ac.abort();
    await run;
  });

  it('stops taking work on abort and waits for the in-flight reconcile', async () => {
    const { sut } = makeSut();
    const ac = new AbortController();
    let finished = false;
    sut.add('a');
    sut.add('b');
    const run = sut.run(
      async () => {
        await sleep(40);
        finished = true;
      },
      { workers: 1, signal: ac.signal },
    );
    await eventually(() => expect(sut.inFlight()).toBe(1));
    ac.abort();
    await run;
    expect(finished).toBe(true);
    sut.add('c');
    expect(sut.depth()).toBe(1); // 'b' was waiting; adds after shutdown are ignored
  });
});
