import { describe, expect, it } from 'vitest';
import { CoalescedRun } from './coalesced-run.js';

/** A job whose runs the test finishes one by one. */
function gatedJob(): { job: () => Promise<void>; runs: number; finish: (err?: Error) => void } {
  const gates: ((err?: Error) => void)[] = [];
  const state = {
    runs: 0,
    job: () =>
      new Promise<void>((resolve, reject) => {
        state.runs++;
        gates.push((err) => (err ? reject(err) : resolve()));
      }),
    finish: (err?: Error) => gates.shift()!(err),
  };
  return state;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe(CoalescedRun.name, () => {
  it('runs at once when idle, and only once', async () => {
    let runs = 0;
    const c = new CoalescedRun(async () => void runs++);
    await c.trigger();
    expect(runs).toBe(1);
    expect(c.running).toBe(false);
  });

  it('folds every request during a run into exactly one follow-up run, which the earlier callers also wait for', async () => {
    const j = gatedJob();
    const c = new CoalescedRun(j.job);
    let firstDone = false;
    const first = c.trigger().then(() => (firstDone = true));
    await tick();
    const later = [c.trigger(), c.trigger(), c.trigger()];
    j.finish();
    await tick();
    expect(j.runs).toBe(2); // the follow-up started
    expect(firstDone).toBe(false); // the first caller waits for the follow-up too: the chain covers its request
    j.finish();
    await Promise.all([first, ...later]);
    expect(j.runs).toBe(2);
    expect(c.running).toBe(false);
  });

  it('never overlaps runs', async () => {
    let active = 0;
    let most = 0;
    const c = new CoalescedRun(async () => {
      most = Math.max(most, ++active);
      await tick();
      active--;
    });
    await Promise.all(Array.from({ length: 10 }, () => c.trigger()));
    expect(most).toBe(1);
  });

  it('a request from inside the job asks for one more run', async () => {
    let runs = 0;
    const c: CoalescedRun = new CoalescedRun(async () => {
      if (++runs < 3) void c.trigger();
    });
    await c.trigger();
    expect(runs).toBe(3);
  });

  it('keepGoing false drops the follow-up', async () => {
    const j = gatedJob();
    let stopping = false;
    const c = new CoalescedRun(j.job, () => !stopping);
    const p = c.trigger();
    await tick();
    void c.trigger();
    stopping = true;
    j.finish();
    await p;
    expect(j.runs).toBe(1);
  });

  it('a failed run rejects its chain, drops the follow-up, and the next trigger starts afresh', async () => {
    const j = gatedJob();
    const c = new CoalescedRun(j.job);
    const p = c.trigger();
    await tick();
    const q = c.trigger();
    j.finish(new Error('boom'));
    await expect(p).rejects.toThrow('boom');
    await expect(q).rejects.toThrow('boom');
    expect(j.runs).toBe(1);
    await c.settled();
    const r = c.trigger();
    await tick();
    j.finish();
    await r;
    expect(j.runs).toBe(2);
  });

  it('settled() waits for the chain and never rejects', async () => {
    const c = new CoalescedRun(async () => {
      await tick();
      throw new Error('x');
    });
    const p = c.trigger().catch(() => undefined);
    await expect(c.settled()).resolves.toBeUndefined();
    expect(c.running).toBe(false);
    await p;
  });
});
