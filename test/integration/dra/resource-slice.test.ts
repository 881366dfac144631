import { afterEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { KubeApiError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { discoverHost } from '../../../src/host/discover.js';
import { gpuFactsReader } from '../../../src/dra/facts.js';
import { RESOURCE_SLICES, resourceSlice } from '../../../src/dra/slice.js';
import { KubeSliceSink, SlicePublisher } from '../../../src/dra/slice-publisher.js';
import { HttpKubeApi } from '../../../src/kube/http-kube-api.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { FakeApiServer } from '../../../src/testing/fake-apiserver/index.js';
import { eventually } from '../../support/eventually.js';

const NODE = 'node-a';
let server: FakeApiServer | undefined;
let api: HttpKubeApi | undefined;
afterEach(async () => {
  api?.close();
  await server?.close();
  server = undefined;
  api = undefined;
});

async function setup() {
  server = await FakeApiServer.start();
  server.seed('', 'v1', 'nodes', { metadata: { name: NODE } });
  api = new HttpKubeApi({ config: { server: server.url } });
  const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
  const publisher = new SlicePublisher({ nodeName: NODE, sink: new KubeSliceSink(api), facts: gpuFactsReader(kernel), clock: realClock, logger: silentLogger, backoff: { initialMs: 20, maxMs: 100 } });
  const stored = () => server!.object('resource.k8s.io', 'v1', 'resourceslices', 'node-a-gpu.handoff.dev') as unknown as ReturnType<typeof resourceSlice> & { metadata: { ownerReferences?: { kind: string; name: string }[] } };
  return { kernel, publisher, stored, server };
}

describe('ResourceSlice publisher against the fake API server (validates like kube-apiserver)', () => {
  it('publishes one slice for the node: pool = node, a device per GPU with the attributes a scheduler and KubeVirt use', async () => {
    const t = await setup();
    await t.publisher.update(await discoverHost(t.kernel));
    const slice = t.stored();
    expect(slice.spec.driver).toBe('gpu.handoff.dev');
    expect(slice.spec.nodeName).toBe(NODE);
    expect(slice.spec.pool).toEqual({ name: NODE, generation: 1, resourceSliceCount: 1 });
    expect(slice.metadata.ownerReferences?.map((o) => `${o.kind}/${o.name}`)).toEqual(['Node/node-a']);
    expect(slice.spec.devices.map((d) => d.name)).toEqual(['gpu-0000-02-00-0', 'gpu-0000-18-00-0', 'gpu-0000-3b-00-0', 'gpu-0000-9b-00-0', 'gpu-0000-bb-00-0']);
    const h100 = slice.spec.devices.find((d) => d.name === 'gpu-0000-18-00-0')!;
    expect(h100.attributes).toEqual({
      'resource.kubernetes.io/pciBusID': { string: '0000:18:00.0' },
      'resource.kubernetes.io/pcieRoot': { string: 'pci0000:17' },
      vendorID: { string: '10de' },
      deviceID: { string: '2331' },
      class: { string: '030200' },
      bootVGA: { bool: false },
      numaNode: { int: 0 },
      iommuGroup: { int: 31 },
    });
    // The BMC's VGA is the boot GPU: published, marked, so only a class that asks for boot GPUs selects it.
    expect(slice.spec.devices.find((d) => d.name === 'gpu-0000-02-00-0')!.attributes['bootVGA']).toEqual({ bool: true });
  });

  it('hot remove and hot add change the device list and bump the pool generation; an unchanged host writes nothing', async () => {
    const t = await setup();
    await t.publisher.update(await discoverHost(t.kernel));
    t.server.resetRequestLog();
    await t.publisher.update(await discoverHost(t.kernel));
    expect(t.server.requests({ verb: 'update' })).toEqual([]);
    t.kernel.removeDevice('0000:bb:00.0');
    await t.publisher.update(await discoverHost(t.kernel));
    expect(t.stored().spec.pool.generation).toBe(2);
    expect(t.stored().spec.devices.map((d) => d.name)).not.toContain('gpu-0000-bb-00-0');
    t.kernel.addDevice({ address: '0000:bb:00.0', parent: '0000:ba:01.0', class: '0x030200', vendor: '10de', device: '2331', iommuGroup: 135, numaNode: 1, driver: 'nvidia' });
    await t.publisher.update(await discoverHost(t.kernel));
    expect(t.stored().spec.pool.generation).toBe(3);
    expect(t.stored().spec.devices.find((d) => d.name === 'gpu-0000-bb-00-0')?.attributes['numaNode']).toEqual({ int: 1 });
  });

  it('a slice deleted behind our back (kubelet wipes a deregistered driver\u2019s slices) comes back at the next resync', async () => {
    const t = await setup();
    await t.publisher.update(await discoverHost(t.kernel));
    await api!.delete(RESOURCE_SLICES, 'node-a-gpu.handoff.dev');
    await t.publisher.update(await discoverHost(t.kernel)); // within the resync period: no read, no write
    expect(t.stored()).toBeUndefined();
    t.publisher.resync();
    await t.publisher.update(await discoverHost(t.kernel));
    expect(t.stored()?.spec.devices).toHaveLength(5);
  });

  it('a failed write is retried with backoff until the API server takes it', async () => {
    const t = await setup();
    t.server.failNext({ verb: 'create' }, 2, 503);
    await t.publisher.update(await discoverHost(t.kernel));
    await eventually(() => expect(t.stored()?.spec.devices).toHaveLength(5), 10_000);
  });

  it('the fake API server refuses what kube-apiserver refuses: a bad device name, an unqualified-but-long attribute, a changed nodeName', async () => {
    const t = await setup();
    const bad = resourceSlice(NODE, [{ name: 'GPU_0', attributes: {} }], 1);
    await expect(api!.create(RESOURCE_SLICES, bad)).rejects.toThrow(/spec.devices\[0\].name: Invalid value/);
    const long = resourceSlice(NODE, [{ name: 'gpu-0', attributes: { thisAttributeNameIsMuchTooLongForDra: { string: 'x' } } }], 1);
    await expect(api!.create(RESOURCE_SLICES, long)).rejects.toThrow(/C identifier of at most 32/);
    const twoValues = resourceSlice(NODE, [{ name: 'gpu-0', attributes: { model: { string: 'x', int: 1 } as never } }], 1);
    await expect(api!.create(RESOURCE_SLICES, twoValues)).rejects.toThrow(KubeApiError);
    await t.publisher.update(await discoverHost(t.kernel));
    const moved = { ...t.stored(), spec: { ...t.stored().spec, nodeName: 'node-b' } };
    await expect(api!.replace(RESOURCE_SLICES, moved)).rejects.toThrow(/spec.nodeName: Invalid value: field is immutable/);
  });
});
