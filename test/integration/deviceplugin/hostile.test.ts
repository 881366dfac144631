import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadDevicePluginApi, unixTarget, type DevicePluginClient } from '../../../src/deviceplugin/api.js';
import { socketFileName } from '../../../src/deviceplugin/resources.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { GPU0, GPU1, RTX, makeRig, twoRtxProfile } from './harness.js';
import type { Rig } from './harness.js';

/** A client that is not kubelet: anything with access to the plugin's socket. */
const rigs: Rig[] = [];
const clients: grpc.Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(rigs.splice(0).map((r) => r.cleanup()));
});

async function setup(): Promise<{ rig: Rig; client: DevicePluginClient }> {
  const rig = await makeRig(new SimulatedKernel(twoRtxProfile()));
  rigs.push(rig);
  await rig.start({});
  await rig.kubelet.waitFor(() => rig.kubelet.healthy(RTX).length > 0, 5000, 'first ListAndWatch');
  const api = loadDevicePluginApi();
  const client = new api.DevicePluginClient(unixTarget(join(rig.dir, socketFileName(RTX))), grpc.credentials.createInsecure());
  clients.push(client);
  return { rig, client };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- raw calls with hostile payloads the typed client would not allow
const call = <Res = unknown>(fn: (...args: any[]) => unknown, self: object, req: unknown) =>
  new Promise<{ code?: number; details?: string; res?: Res }>((resolve) =>
    fn.call(self, req, {}, (e: grpc.ServiceError | null, r?: Res) => resolve(e ? { code: e.code, details: e.details } : { res: r })),
  );

describe('hostile or sloppy calls to the device plugin', () => {
  it('one Allocate naming the same ID 20,000 times is refused before it is decoded, and the plugin keeps serving', async () => {
    const { rig, client } = await setup();
    const before = process.memoryUsage().rss;
    const r = await call(client.Allocate, client, { container_requests: [{ devices_ids: Array.from({ length: 20_000 }, () => GPU0) }] });
    expect(r.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // (Same process: the refusal happened in grpc-js's length check, not after building 20,000 strings.)
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
    expect((await rig.kubelet.allocate(RTX, [[GPU0]])).container_responses).toHaveLength(1);
  });

  it('a request under the size limit with more IDs than devices, or a device twice, is refused cheaply', async () => {
    const { client } = await setup();
    const many = await call(client.Allocate, client, { container_requests: [{ devices_ids: Array.from({ length: 3_000 }, () => GPU0) }] });
    expect(many.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(many.details).toMatch(/requested twice|more device IDs/);
    const twice = await call(client.Allocate, client, { container_requests: [{ devices_ids: [GPU0] }, { devices_ids: [GPU0] }] });
    expect(twice.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(twice.details).toMatch(/0000:01:00\.0 is requested twice/);
    const unknown = await call(client.Allocate, client, { container_requests: [{ devices_ids: [GPU0, GPU1, '0000:99:00.0'] }] });
    expect(unknown.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('GetPreferredAllocation never returns an ID it did not advertise', async () => {
    const { client } = await setup();
    const stranger = await call(client.GetPreferredAllocation, client, {
      container_requests: [{ available_deviceIDs: [GPU0, GPU1, 'evil'], must_include_deviceIDs: ['evil'], allocation_size: 1 }],
    });
    expect(stranger.code).toBe(grpc.status.INVALID_ARGUMENT);
    const filtered = await call<{ container_responses: { deviceIDs: string[] }[] }>(client.GetPreferredAllocation, client, {
      container_requests: [{ available_deviceIDs: ['evil', GPU1, 'worse'], must_include_deviceIDs: [], allocation_size: 1 }],
    });
    expect(filtered.res?.container_responses[0]?.deviceIDs).toEqual([GPU1]);
  });

  it('a client cancelling its own ListAndWatch does not make the plugin re-register; kubelet breaking its stream does', async () => {
    const { rig, client } = await setup();
    const registrations = rig.kubelet.registerCalls.length;
    for (let i = 0; i < 3; i++) {
      const stream = client.ListAndWatch({});
      await new Promise<void>((resolve) => stream.once('data', () => resolve()));
      stream.cancel();
      stream.on('error', () => undefined);
    }
    await new Promise((r) => setTimeout(r, 500));
    expect(rig.kubelet.registerCalls.length).toBe(registrations);
    expect(rig.recorder.events.reregistered).toEqual([]);
    // Another client holds a stream while kubelet's breaks: kubelet's stream is what counts, so the
    // plugin re-registers now (not when the other client happens to go away), and only once.
    const held = client.ListAndWatch({});
    held.on('error', () => undefined);
    await new Promise<void>((resolve) => held.once('data', () => resolve()));
    rig.kubelet.breakStream(RTX);
    await rig.kubelet.waitFor(() => rig.recorder.events.reregistered.length >= 1, 5000, 'reregistered');
    expect(rig.recorder.events.reregistered).toEqual([[RTX, 'stream_broken']]);
    await rig.kubelet.waitFor(() => rig.kubelet.healthy(RTX).length > 0, 5000, 'kubelet stream back');
    held.cancel();
    await new Promise((r) => setTimeout(r, 500));
    expect(rig.recorder.events.reregistered).toEqual([[RTX, 'stream_broken']]);
  });
});
