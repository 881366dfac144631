import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock, type Clock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { NodeAgent, NODE_OBJECT } from '../../../src/agent/node-agent.js';
import type { DeviceHolder, PodResourcesPort } from '../../../src/agent/pod-resources.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { ClientNodeKubeApi } from '../../../src/kube/kube-api.js';
import type { NodeGpuPassthrough } from '../../../src/api/v1alpha1/index.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';

class FakePodResources implements PodResourcesPort {
  holders: DeviceHolder[] = [];
  down = false;
  async list(): Promise<DeviceHolder[]> {
    if (this.down) throw new Error('connection refused');
    return this.holders;
  }
}

class ManualClock implements Clock {
  t = Date.parse('2026-11-25T12:00:00Z');
  now(): number {
    return this.t;
  }
  sleep(): Promise<void> {
    return Promise.resolve();
  }
}

const NODE = 'gpu-node-1';

describe('NodeAgent against the fake API server and the simulated kernel', () => {
  let server: FakeApiServer;
  let kernel: SimulatedKernel;
  let pods: FakePodResources;
  let clock: ManualClock;
  let sut: NodeAgent;
  let kube: ClientNodeKubeApi;

  async function setup(profile: string, extra: Partial<ConstructorParameters<typeof NodeAgent>[0]> = {}): Promise<void> {
    kernel = new SimulatedKernel(await loadBuiltinProfile(profile));
    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 100, writeTimeoutMs: 300 });
    kube = new ClientNodeKubeApi({ kubeConfig: server.kubeConfig() });
    sut = new NodeAgent({ nodeName: NODE, engine, kube, podResources: pods, clock, logger: silentLogger, retryBaseMs: 1_000, ...extra });
  }

  beforeEach(async () => {
    server = await FakeApiServer.start();
    server.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE, labels: { gpu: 'yes' } } });
    pods = new FakePodResources();
    clock = new ManualClock();
  });
  afterEach(async () => {
    await server.close();
  });

  function obj(): NodeGpuPassthrough {
    return server.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', NODE) as unknown as NodeGpuPassthrough;
  }
  async function desire(gpus: { address: string; allowBootGpu?: boolean; resourceName?: string }[]): Promise<void> {
    await sut.ensureObject(); // the operator only ever patches the object the agent created
    await kube.patch(NODE_OBJECT, NODE, { type: 'merge', body: { spec: { gpus: gpus.map((g) => ({ policy: 'p', ...g })) } } });
  }
  const phases = () => Object.fromEntries((obj().status?.gpus ?? []).map((g) => [g.address, `${g.phase}${g.reason ? `/${g.reason}` : ''}`]));

  it('creates its node object owned by the Node and reports the inventory, all GPUs on the host', async () => {
    await setup('server-aspeed-4xh100');
    await sut.reconcileOnce();
    const o = obj();
    expect(o.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'Node', name: NODE });
    expect(o.status?.inventory?.map((g) => g.address)).toEqual(['0000:02:00.0', '0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0']);
    expect(new Set(Object.values(phases()))).toEqual(new Set(['Host']));
    expect(o.status?.node).toMatchObject({ kernelRelease: '6.8.0-51-generic', iommuEnabled: true, vfioPci: 'Loadable' });
    expect(kernel.writeLog).toEqual([]);
  });

  it('prepares desired GPUs to Ready, then releases one the spec drops', async () => {
    await setup('server-aspeed-4xh100');
    await sut.reconcileOnce();
    await desire([{ address: '0000:18:00.0' }, { address: '0000:3b:00.0' }]);
    await sut.reconcileOnce();
    expect(phases()).toMatchObject({ '0000:18:00.0': 'Ready', '0000:3b:00.0': 'Ready', '0000:9b:00.0': 'Host' });
    expect(obj().status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    await desire([{ address: '0000:18:00.0' }]);
    await sut.reconcileOnce();
    expect(phases()).toMatchObject({ '0000:18:00.0': 'Ready', '0000:3b:00.0': 'Host' });
    expect((await kernel.readLink('sys/bus/pci/devices/0000:3b:00.0/driver'))?.endsWith('/nvidia')).toBe(true);
  });

  it('never releases a GPU a pod holds: Releasing/InUse until the pod is gone', async () => {
    await setup('server-aspeed-4xh100');
    await desire([{ address: '0000:18:00.0' }]);
    await sut.reconcileOnce();
    pods.holders = [{ namespace: 'vms', pod: 'virt-launcher-a', container: 'compute', resourceName: 'nvidia.com/GH100_H100_PCIE', deviceId: '0000:18:00.0' }];
    await desire([]);
    kernel.clearWriteLog();
    await sut.reconcileOnce();
    expect(phases()['0000:18:00.0']).toBe('Releasing/InUse');
    expect(kernel.writeLog).toEqual([]);
    pods.down = true;
    await sut.reconcileOnce();
    expect(phases()['0000:18:00.0']).toBe('Releasing/InUseUnknown');
    expect(kernel.writeLog).toEqual([]);
    pods.down = false;
    pods.holders = [];
    await sut.reconcileOnce();
    expect(phases()['0000:18:00.0']).toBe('Host');
  });

  it('counts a GPU held through another plugin whose device IDs are IOMMU group numbers (KubeVirt\u2019s own, older NVIDIA) as in use', async () => {
    await setup('server-aspeed-4xh100');
    await desire([{ address: '0000:18:00.0' }]);
    await sut.reconcileOnce();
    const group = obj().status?.gpus?.find((g) => g.address === '0000:18:00.0')?.iommuGroup;
    expect(group).toBeTypeOf('number');
    pods.holders = [{ namespace: 'vms', pod: 'virt-launcher-b', container: 'compute', resourceName: 'nvidia.com/GH100_H100_PCIE', deviceId: String(group) }];
    await desire([]);
    kernel.clearWriteLog();
    await sut.reconcileOnce();
    expect(phases()['0000:18:00.0']).toBe('Releasing/InUse');
    expect(kernel.writeLog).toEqual([]);
  });

  it('closes the release window: withdraws the GPU from the device plugin, asks PodResources again, and does not unbind when a pod took it meanwhile', async () => {
    const calls: string[] = [];
    await setup('server-aspeed-4xh100', {
      withdraw: async (set) => {
        calls.push(`withdraw:${[...set].join(',')}`);
      },
    });
    await desire([{ address: '0000:18:00.0' }]);
    await sut.reconcileOnce();
    await desire([]);
    kernel.clearWriteLog();
    // Free at the first look; kubelet admits a pod onto the GPU before the withdrawal reached it.
    let lists = 0;
    pods.list = async () => {
      lists++;
      calls.push(`list:${lists}`);
      return lists === 1 ? [] : [{ namespace: 'vms', pod: 'virt-launcher-c', container: 'compute', resourceName: 'nvidia.com/GH100_H100_PCIE', deviceId: '0000:18:00.0' }];
    };
    calls.length = 0;
    await sut.reconcileOnce();
    expect(calls.slice(0, 3)).toEqual(['list:1', 'withdraw:0000:18:00.0', 'list:2']);
    expect(kernel.writeLog).toEqual([]);
    expect(phases()['0000:18:00.0']).toBe('Releasing/InUse');
    // Still leaving: it stays withdrawn. Once the pod is gone it is released, then no longer withdrawn.
    expect(calls.at(-1)).toBe('withdraw:0000:18:00.0');
    pods.list = async () => [];
    await sut.reconcileOnce();
    expect(phases()['0000:18:00.0']).toBe('Host');
    await sut.reconcileOnce();
    expect(calls.at(-1)).toBe('withdraw:');
  });

  it('reports the boot GPU Failed without permission and Ready with it', async () => {
    await setup('workstation-efifb');
    await desire([{ address: '0000:01:00.0' }]);
    await sut.reconcileOnce();
    expect(phases()['0000:01:00.0']).toBe('Failed/BootGpuNotPermitted');
    expect(kernel.writeLog).toEqual([]);
    await desire([{ address: '0000:01:00.0', allowBootGpu: true }]);
    await sut.reconcileOnce();
    expect(phases()['0000:01:00.0']).toBe('Ready');
    expect(obj().status?.node?.framebuffer).toBe('none');
  });

  it('reports a failed handoff, backs off, and succeeds on a later retry', async () => {
    await setup('server-aspeed-4xh100');
    kernel.injectFault({ path: 'sys/bus/pci/drivers/nvidia/unbind', errno: 'EBUSY', times: 1 });
    await desire([{ address: '0000:18:00.0' }]);
    await sut.reconcileOnce();
    expect(phases()['0000:18:00.0']).toBe('Failed/HostWriteFailed');
    expect(obj().status?.gpus?.find((g) => g.address === '0000:18:00.0')?.message).toMatch(/EBUSY/);
    kernel.clearWriteLog();
    await sut.reconcileOnce(); // within the backoff: no new attempt
    expect(kernel.writeLog).toEqual([]);
    clock.t += 2_000;
    await sut.reconcileOnce();
    expect(phases()['0000:18:00.0']).toBe('Ready');
  });

  it('stays alive through hung writes on five GPUs, reports each Failed/Timeout naming the write, and never writes to a hung GPU again', async () => {
    await setup('bench-16gpu');
    const snap = await (await import('../../../src/host/discover.js')).discoverHost(kernel);
    const gpus = snap.gpus.filter((g) => !g.isBootGpu).map((g) => g.fn.address).slice(0, 6);
    const hung = gpus.slice(0, 5);
    for (const a of hung) kernel.injectHang({ path: `sys/bus/pci/devices/${a}/driver_override` });
    await desire(gpus.map((address) => ({ address })));
    await sut.reconcileOnce();
    for (const a of hung) {
      expect(phases()[a]).toBe('Failed/Timeout');
      expect(obj().status?.gpus?.find((g) => g.address === a)?.message).toMatch(new RegExp(`${a.replace(/\./g, '\\.')}/driver_override did not return`));
    }
    expect(phases()[gpus[5]!]).toBe('Ready');
    expect(kernel.hungWrites).toBe(5);
    // Backoff over: the agent tries again, but the engine refuses to write to a device whose write hung.
    clock.t += 60_000;
    await sut.reconcileOnce();
    for (const a of hung) {
      expect(phases()[a]).toBe('Failed/Timeout');
      expect(kernel.writeLog.filter((w) => w.path.includes(a))).toHaveLength(1);
    }
    expect(kernel.hungWrites).toBe(5);
  });

  it('reports GPUs someone else bound to vfio-pci as Ready and never releases them', async () => {
    await setup('server-aspeed-l40s-vfio');
    await sut.reconcileOnce();
    expect(phases()['0000:18:00.0']).toBe('Ready/ExternallyBound');
    expect(kernel.writeLog).toEqual([]);
  });

  it('marks a desired address the node does not have as Failed/NotFound', async () => {
    await setup('server-aspeed-4xh100');
    await desire([{ address: '0000:99:00.0' }]);
    await sut.reconcileOnce();
    expect(phases()['0000:99:00.0']).toBe('Failed/NotFound');
  });
});
