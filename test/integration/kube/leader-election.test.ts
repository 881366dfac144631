import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { KubeApiError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { ClientNodeKubeApi, type KubeApi } from '../../../src/kube/kube-api.js';
import { LeaderElector, type Lease } from '../../../src/kube/leader-election.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';
import { eventually as waitUntil } from '../../support/eventually.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const eventually = (check: () => void, timeoutMs = 5000): Promise<void> => waitUntil(check, timeoutMs);

/** A KubeApi that can be cut off from the server, as a partitioned or frozen leader would be. */
function partitionable(api: KubeApi): { api: Pick<KubeApi, 'get' | 'create' | 'replace'>; cut: () => void } {
  let cut = false;
  const guard = <R>(fn: () => Promise<R>): Promise<R> => (cut ? Promise.reject(new KubeApiError('partitioned', undefined)) : fn());
  return {
    api: {
      get: (r, n, ns) => guard(() => api.get(r, n, ns)),
      create: (r, o) => guard(() => api.create(r, o)),
      replace: (r, o) => guard(() => api.replace(r, o)),
    },
    cut: () => {
      cut = true;
    },
  };
}

describe(LeaderElector.name, () => {
  let server: FakeApiServer;
  let api: ClientNodeKubeApi;
  const timing = { leaseDurationMs: 1000, renewDeadlineMs: 500, retryPeriodMs: 50 };

  beforeEach(async () => {
    server = await FakeApiServer.start();
    api = new ClientNodeKubeApi({ kubeConfig: server.kubeConfig() });
  });
  afterEach(async () => {
    await server.close();
  });

  function candidate(identity: string, kubeApi: Pick<KubeApi, 'get' | 'create' | 'replace'> = api) {
    const events: string[] = [];
    const leaderFlags: boolean[] = [];
    let workSignal: AbortSignal | undefined;
    const sut = new LeaderElector(
      { api: kubeApi, clock: realClock, logger: silentLogger, recorder: { leader: (v) => void leaderFlags.push(v) } },
      { namespace: 'kube-system', name: 'vfio-handoff-operator', identity, ...timing },
    );
    const ac = new AbortController();
    const done = sut.run(
      {
        onStartedLeading: (s) => {
          workSignal = s;
          events.push('started');
        },
        onStoppedLeading: () => void events.push('stopped'),
      },
      ac.signal,
    );
    return { sut, events, leaderFlags, stop: async () => (ac.abort(), await done), work: () => workSignal };
  }

  const lease = (): Lease | undefined => server.object('coordination.k8s.io', 'v1', 'leases', 'vfio-handoff-operator', 'kube-system') as Lease | undefined;

  it('creates the Lease, leads, and keeps renewing it', async () => {
    const a = candidate('a');
    await eventually(() => expect(a.sut.isLeader()).toBe(true));
    expect(lease()?.spec).toMatchObject({ holderIdentity: 'a', leaseDurationSeconds: 1, leaseTransitions: 0 });
    const first = lease()?.spec?.renewTime;
    await eventually(() => expect(lease()?.spec?.renewTime).not.toBe(first));
    expect(a.events).toEqual(['started']);
    expect(a.leaderFlags).toEqual([true]);
    await a.stop();
  });

  it('lets only one of two candidates lead', async () => {
    const a = candidate('a');
    const b = candidate('b');
    await eventually(() => expect([a.sut.isLeader(), b.sut.isLeader()].filter(Boolean)).toHaveLength(1));
    await sleep(300);
    expect([a.sut.isLeader(), b.sut.isLeader()].filter(Boolean)).toHaveLength(1);
    expect(a.sut.leader()).toBe(b.sut.leader());
    await a.stop();
    await b.stop();
  });

  it('fails over after the lease duration when the leader stops renewing', async () => {
    const cutA = partitionable(api);
    const a = candidate('a', cutA.api);
    await eventually(() => expect(a.sut.isLeader()).toBe(true));
    const b = candidate('b');
    await sleep(200);
    expect(b.sut.isLeader()).toBe(false);
    const cutAt = Date.now();
    cutA.cut();
    // The old leader steps down at its renew deadline, before the successor may take over.
    await eventually(() => expect(a.events).toEqual(['started', 'stopped']));
    expect(a.work()?.aborted).toBe(true);
    await eventually(() => expect(b.sut.isLeader()).toBe(true));
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(900);
    expect(lease()?.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    await a.stop();
    await b.stop();
  });

  it('releases the Lease on stop so the successor takes over without waiting for expiry', async () => {
    const a = candidate('a');
    await eventually(() => expect(a.sut.isLeader()).toBe(true));
    const b = candidate('b');
    await sleep(100);
    const stoppedAt = Date.now();
    await a.stop();
    expect(a.events).toEqual(['started', 'stopped']);
    expect(lease()?.spec?.holderIdentity).toBe('');
    await eventually(() => expect(b.sut.isLeader()).toBe(true));
    expect(Date.now() - stoppedAt).toBeLessThan(800);
    await b.stop();
  });

  it('mayWrite fences a leader paused past its renew deadline before its own loop notices (issue 17)', async () => {
    const sut = new LeaderElector({ api, clock: realClock, logger: silentLogger }, { namespace: 'ops', name: 'l', identity: 'a', ...timing });
    const stop = new AbortController();
    const running = sut.run({ onStartedLeading: () => undefined, onStoppedLeading: () => undefined }, stop.signal);
    await eventually(() => expect(sut.mayWrite()).toBe(true));
    // A pause (GC, frozen VM, SIGSTOP): the event loop does not run for longer than the renew deadline.
    const until = Date.now() + timing.leaseDurationMs + 100;
    while (Date.now() < until);
    // Resumed: still "leader" as far as the renew loop knows, but no write may go out.
    expect(sut.isLeader()).toBe(true);
    expect(sut.mayWrite()).toBe(false);
    stop.abort();
    await running;
    expect(sut.mayWrite()).toBe(false);
  });
});
