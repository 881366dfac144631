/**
 * The node agent on a host whose two GPUs share IOMMU group 1 (src/testing/host-fixtures.ts), with the
 * spec wanting only one of them: passes after the first change nothing (before the fix, the second pass
 * released the group to give the other GPU back, the third prepared it again, and so on).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock, type Clock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { NodeAgent, NODE_OBJECT } from '../../../src/agent/node-agent.js';
import type { PodResourcesPort } from '../../../src/agent/pod-resources.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { ClientNodeKubeApi } from '../../../src/kube/kube-api.js';
import type { NodeGpuPassthrough } from '../../../src/api/v1alpha1/index.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';
import { twoGpusOneGroup } from '../../../src/testing/host-fixtures.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';

const NODE = 'desktop-1';
const A = '0000:01:00.0';
const B = '0000:02:00.0';
const GROUP_1 = ['0000:01:00.0', '0000:01:00.1', '0000:02:00.0', '0000:02:00.1'];
const noPods: PodResourcesPort = { list: async () => [] };
const fixedClock: Clock = { now: () => Date.parse('2026-11-30T08:00:00Z'), sleep: () => Promise.resolve() };

describe('NodeAgent: two GPUs in one IOMMU group, one wanted', () => {
  let server: FakeApiServer;
  beforeEach(async () => {
    server = await FakeApiServer.start();
    server.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
  });
  afterEach(async () => {
    await server.close();
  });

  it('prepares the group once and keeps it: the other GPU is Releasing/SharesIommuGroup, later passes write nothing; dropping the wish gives both back', async () => {
    const kernel = new SimulatedKernel(twoGpusOneGroup());
    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 100, writeTimeoutMs: 300 });
    const kube = new ClientNodeKubeApi({ kubeConfig: server.kubeConfig() });
    const agent = new NodeAgent({ nodeName: NODE, engine, kube, podResources: noPods, clock: fixedClock, logger: silentLogger, retryBaseMs: 1_000 });
    const driverOf = async (a: string) => (await kernel.readLink(`sys/bus/pci/devices/${a}/driver`))?.split('/').pop();
    const phases = () => {
      const o = server.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', NODE) as unknown as NodeGpuPassthrough;
      return Object.fromEntries((o.status?.gpus ?? []).filter((g) => g.iommuGroup === 1).map((g) => [g.address, `${g.phase}${g.reason ? `/${g.reason}` : ''}`]));
    };

    await agent.ensureObject();
    await kube.patch(NODE_OBJECT, NODE, { type: 'merge', body: { spec: { gpus: [{ address: A, policy: 'p', resourceName: 'nvidia.com/GA102' }] } } });
    await agent.reconcileOnce();
    expect(await Promise.all(GROUP_1.map(driverOf))).toEqual(['vfio-pci', 'vfio-pci', 'vfio-pci', 'vfio-pci']);

    kernel.clearWriteLog();
    for (let pass = 0; pass < 3; pass++) await agent.reconcileOnce();
    expect(kernel.writeLog).toEqual([]);
    expect(phases()).toEqual({ [A]: 'Ready', [B]: 'Releasing/SharesIommuGroup' });

    await kube.patch(NODE_OBJECT, NODE, { type: 'merge', body: { spec: { gpus: [] } } });
    await agent.reconcileOnce();
    expect(await Promise.all(GROUP_1.map(driverOf))).toEqual(['nvidia', 'snd_hda_intel', 'nvidia', 'snd_hda_intel']);
    await agent.reconcileOnce();
    expect(phases()).toEqual({ [A]: 'Host', [B]: 'Host' });
  });
});
