import { readFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KubeApiError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { KubeApi } from '../../../src/kube/index.js';
import { CoreResources } from '../../../src/kube/index.js';
import { GPU_PASSTHROUGH, NODE_GPU_PASSTHROUGH, READY_LABEL } from '../../../src/api/v1alpha1/index.js';
import { loadCrd } from '../../../src/api/v1alpha1/index.js';
import { checkCrds } from '../../../src/operator/run-operator.js';
import { type Cluster, condition, eventually, inventory, specGpus, startCluster } from './harness.js';

/** A replica's view of the Lease API that a test can cut off, as a network partition or a hung process would. */
class CuttableLeaseApi implements Pick<KubeApi, 'get' | 'create' | 'replace'> {
  cut = false;
  constructor(private readonly api: KubeApi) {}
  private check(): void {
    if (this.cut) throw new KubeApiError('partitioned', undefined);
  }
  get: KubeApi['get'] = async (...a) => (this.check(), this.api.get(...a));
  create: KubeApi['create'] = async (...a) => (this.check(), this.api.create(...a));
  replace: KubeApi['replace'] = async (...a) => (this.check(), this.api.replace(...a));
}

function leaseHolder(c: Cluster): string | undefined {
  return (c.server.object('coordination.k8s.io', 'v1', 'leases', 'vfio-handoff-operator', 'vfio-handoff')?.['spec'] as { holderIdentity?: string } | undefined)
    ?.holderIdentity;
}

describe('operator: leader failover and fault injection', () => {
  let c: Cluster;
  beforeEach(async () => {
    c = await startCluster();
    for (const n of ['node-a', 'node-b', 'node-c']) await c.agents.addNode(n, {}, inventory(2));
  });
  afterEach(async () => {
    await c.close();
  });

  it('hands over when the leader stops renewing: the standby takes the Lease and converges', async () => {
    const leaseA = new CuttableLeaseApi(c.api);
    const a = c.startOperator({ leaderElect: true, identity: 'op-a', leaseApi: leaseA });
    await eventually(() => expect(a.handle.isLeader()).toBe(true));
    const b = c.startOperator({ leaderElect: true, identity: 'op-b' });
    await eventually(() => expect(b.handle.ready().ready).toBe(true));
    expect(b.handle.isLeader()).toBe(false);
    expect(b.handle.controller.isLeading()).toBe(false);

    await c.createPolicy('first', { gpus: { addresses: ['0000:41:00.0'] } });
    await eventually(() => expect(condition(c.policy('first'), 'Ready')).toBe('True'));

    leaseA.cut = true; // A can no longer renew
    await eventually(() => {
      expect(a.handle.isLeader()).toBe(false);
      expect(a.handle.controller.isLeading()).toBe(false); // its workers stopped
    }, 5_000);
    await eventually(() => {
      expect(b.handle.isLeader()).toBe(true);
      expect(leaseHolder(c)).toBe('op-b');
    }, 5_000);
    expect(a.recorder.isLeader).toBe(false);
    expect(b.recorder.isLeader).toBe(true);

    await c.createPolicy('second', { gpus: { addresses: ['0000:42:00.0'] } });
    await eventually(() => {
      expect(condition(c.policy('second'), 'Ready')).toBe('True');
      for (const n of ['node-a', 'node-b', 'node-c']) expect(specGpus(c.state(n)).map((g) => g.policy)).toEqual(['first', 'second']);
    });
  });

  it('converges through dropped watches, failing writes and failing lists', async () => {
    const op = c.startOperator();
    await eventually(() => expect(op.handle.ready().ready).toBe(true));
    c.server.failNext({ verb: 'patch' }, 6, 500);
    c.server.failNext({ verb: 'create', path: '/events' }, 2, 500);
    await c.createPolicy('gpus', {});
    const chaos = setInterval(() => {
      c.server.dropWatches({ abrupt: Math.random() < 0.5 });
      c.server.failNext({ verb: 'list' }, 1, 500);
    }, 60);
    try {
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      clearInterval(chaos);
    }
    await eventually(() => {
      expect(condition(c.policy('gpus'), 'Ready')).toBe('True');
      expect(c.policy('gpus')?.status).toMatchObject({ nodesMatched: 3, nodesReady: 3, gpusReady: 6 });
      for (const n of ['node-a', 'node-b', 'node-c']) expect(c.node(n)?.metadata.labels?.[READY_LABEL]).toBe('true');
    }, 15_000);
    expect(op.recorder.results).toContain('error'); // the injected 500s were seen and retried
    // Restarted informers and relists must not have produced duplicate writes to the node specs.
    const specPatches = c.server.requests({ verb: 'patch', path: /nodegpupassthroughs\/node-a$/ }).filter((r) => r.status === 200);
    expect(specPatches).toHaveLength(1);
  });
});

describe('operator: installed CRD check', () => {
  let c: Cluster;
  beforeEach(async () => {
    c = await startCluster();
  });
  afterEach(async () => {
    await c.close();
  });
  const readText = (url: URL): Promise<string> => readFile(url, 'utf8');

  it('accepts the shipped CRDs and names what an outdated or missing one lacks', async () => {
    const gpt = await loadCrd(GPU_PASSTHROUGH, readText);
    const ngp = await loadCrd(NODE_GPU_PASSTHROUGH, readText);
    c.server.seed('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', gpt as unknown as Record<string, unknown>);
    expect(await checkCrds({ api: c.api, readText, logger: silentLogger })).toEqual(
      new Map([
        ['gpupassthroughs.handoff.dev', { ok: true }],
        ['nodegpupassthroughs.handoff.dev', { ok: false, problems: ['CRD not installed'] }],
      ]),
    );
    const old = structuredClone(ngp);
    delete old.spec.versions[0]!.schema.openAPIV3Schema.properties!['status']!.properties!['inventory'];
    await c.api.create(CoreResources.customResourceDefinitions, old as never);
    const checks = await checkCrds({ api: c.api, readText, logger: silentLogger });
    const problems = checks.get('nodegpupassthroughs.handoff.dev');
    expect(problems?.ok).toBe(false);
    expect(problems && !problems.ok ? problems.problems : []).toContain('schema lacks status.inventory');
  });
});
