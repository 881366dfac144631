import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { ConflictError } from '../../../src/core/errors.js';
import { socketFileName } from '../../../src/deviceplugin/resources.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { FakeKubelet } from '../../support/fake-kubelet.js';
import { AUDIO0, AUDIO1, GPU0, GPU1, RTX, audioDevice, gpuDevice, makeRig, twoRtxProfile } from './harness.js';
import type { Rig } from './harness.js';

const rigs: Rig[] = [];
afterEach(async () => {
  await Promise.all(rigs.splice(0).map((r) => r.cleanup()));
});

async function rigWith(kernel: SimulatedKernel, opts: Parameters<Rig['start']>[0] = {}): Promise<Rig> {
  const rig = await makeRig(kernel);
  rigs.push(rig);
  await rig.start(opts);
  await rig.kubelet.waitFor(() => rig.kubelet.healthy(RTX).length > 0, 5000, 'first ListAndWatch');
  return rig;
}

const grpcCode = async (p: Promise<unknown>): Promise<number | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => (e as grpc.ServiceError).code,
  );

describe('device plugin against the kubelet emulator (simulated kernel)', () => {
  it('serves, then registers one resource per GPU model with a bare endpoint and both option sets', async () => {
    const rig = await rigWith(new SimulatedKernel(twoRtxProfile()));
    const view = rig.kubelet.resource(RTX)!;
    expect(rig.kubelet.resourceNames()).toEqual([RTX]);
    expect(view.registrations).toHaveLength(1);
    expect(view.registrations[0]).toEqual({
      version: 'v1beta1',
      endpoint: socketFileName(RTX, rig.dir),
      resource_name: RTX,
      options: { pre_start_required: false, get_preferred_allocation_available: true },
    });
    expect(view.options[0]).toEqual({ pre_start_required: false, get_preferred_allocation_available: true });
    // Only the GPUs are devices — never their audio functions — with NUMA topology.
    expect(view.devices).toEqual([
      { ID: GPU0, health: 'Healthy', topology: { nodes: [{ ID: 0 }] } },
      { ID: GPU1, health: 'Healthy', topology: { nodes: [{ ID: 1 }] } },
    ]);
    expect(rig.recorder.events.registered).toEqual([[RTX, true]]);
    expect(rig.recorder.events.devices).toContainEqual([RTX, 2, 0]);
  });

  it('Allocate: group nodes for GPU+audio groups, env holds only the GPUs in request order', async () => {
    const rig = await rigWith(new SimulatedKernel(twoRtxProfile()));
    const resp = await rig.kubelet.allocate(RTX, [[GPU1, GPU0]]);
    expect(resp.container_responses).toHaveLength(1);
    const c = resp.container_responses[0]!;
    expect(c.envs).toEqual({ PCI_RESOURCE_NVIDIA_COM_GA102_GEFORCE_RTX_3090: `${GPU1},${GPU0}` });
    expect(c.envs.PCI_RESOURCE_NVIDIA_COM_GA102_GEFORCE_RTX_3090).not.toContain(AUDIO0);
    expect(c.devices.map((d) => [d.container_path, d.host_path, d.permissions])).toEqual([
      ['/dev/vfio/vfio', '/dev/vfio/vfio', 'mrw'],
      ['/dev/vfio/30', '/dev/vfio/30', 'mrw'],
      ['/dev/vfio/12', '/dev/vfio/12', 'mrw'],
    ]);
    const two = await rig.kubelet.allocate(RTX, [[GPU0], [GPU1]]);
    expect(two.container_responses.map((r) => r.envs.PCI_RESOURCE_NVIDIA_COM_GA102_GEFORCE_RTX_3090)).toEqual([GPU0, GPU1]);
    expect(rig.recorder.events.allocate).toEqual([
      [RTX, true],
      [RTX, true],
    ]);
  });

  it('Allocate with iommufd adds /dev/iommu and the vfio cdev of every vfio-bound function of the group', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile({ iommufd: true }));
    const rig = await rigWith(kernel);
    const cdev = (addr: string): string => `/dev/vfio/devices/${kernel.state().devices.find((d) => d.address === addr)!.vfioDev!}`;
    const resp = await rig.kubelet.allocate(RTX, [[GPU0]]);
    expect(resp.container_responses[0]!.devices.map((d) => d.host_path)).toEqual([
      '/dev/vfio/vfio',
      '/dev/vfio/12',
      '/dev/iommu',
      cdev(GPU0),
      cdev(AUDIO0),
    ]);
    expect(resp.container_responses[0]!.devices.every((d) => d.permissions === 'mrw' && d.container_path === d.host_path)).toBe(true);
  });

  it('Allocate refuses unknown devices (INVALID_ARGUMENT) and re-checks the host before answering (FAILED_PRECONDITION)', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    // Rescans are slow here on purpose: the refusal must come from Allocate's own fresh check.
    const rig = await rigWith(kernel, { rescanIntervalMs: 60_000 });
    expect(await grpcCode(rig.kubelet.allocate(RTX, [[AUDIO0]]))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await grpcCode(rig.kubelet.allocate(RTX, [['0000:99:00.0']]))).toBe(grpc.status.INVALID_ARGUMENT);
    kernel.setDriverBinding(GPU0, 'nvidia');
    const err = await rig.kubelet.allocate(RTX, [[GPU0]]).catch((e: unknown) => e as grpc.ServiceError);
    expect((err as grpc.ServiceError).code).toBe(grpc.status.FAILED_PRECONDITION);
    expect((err as grpc.ServiceError).details).toContain(GPU0);
    expect((err as grpc.ServiceError).details).toContain('NOT_ON_VFIO_PCI');
    expect(rig.recorder.events.allocate.filter(([, ok]) => !ok)).toHaveLength(3);
    // The failed check triggered a rescan: kubelet learns the GPU is unhealthy without waiting a minute.
    await rig.kubelet.waitFor(() => rig.kubelet.unhealthy(RTX).includes(GPU0), 3000, 'GPU0 unhealthy');
  });

  it('health follows the host: leaving vfio-pci, a non-viable group, a vanished /dev/vfio node; and back', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    const rig = await rigWith(kernel);
    const k = rig.kubelet;

    kernel.setDriverBinding(GPU0, 'nvidia');
    await k.waitFor(() => k.unhealthy(RTX).includes(GPU0), 3000, 'GPU0 unhealthy after leaving vfio-pci');
    expect(k.healthy(RTX)).toEqual([GPU1]);
    kernel.setDriverBinding(GPU0, 'vfio-pci');
    await k.waitFor(() => k.healthy(RTX).length === 2, 3000, 'GPU0 healthy again');

    kernel.setDriverBinding(AUDIO1, 'snd_hda_intel');
    await k.waitFor(() => k.unhealthy(RTX).includes(GPU1), 3000, 'GPU1 unhealthy: audio sibling on snd_hda_intel');
    kernel.setDriverBinding(AUDIO1, 'vfio-pci');
    await k.waitFor(() => k.healthy(RTX).length === 2, 3000, 'GPU1 healthy again');

    rig.hidden.add('dev/vfio/12');
    await k.waitFor(() => k.unhealthy(RTX).includes(GPU0), 3000, 'GPU0 unhealthy: /dev/vfio/12 gone');
    rig.hidden.delete('dev/vfio/12');
    await k.waitFor(() => k.healthy(RTX).length === 2, 3000, 'GPU0 healthy again');

    // Capacity never changed (unhealthy devices stay listed) and only real changes were pushed.
    const view = k.resource(RTX)!;
    expect(view.updates.every((u) => u.devices.length === 2)).toBe(true);
    expect(view.updates.length).toBe(7);
  });

  it('polls a cheap fingerprint and runs no full discovery while nothing changes', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    const rig = await rigWith(kernel, { rescanIntervalMs: 50 });
    await new Promise((r) => setTimeout(r, 300)); // settle: a change costs at most two scans
    const before = rig.scans;
    await new Promise((r) => setTimeout(r, 1000)); // ~20 polls
    expect(rig.scans - before).toBe(0);
    kernel.setDriverBinding(GPU1, 'nvidia');
    await rig.kubelet.waitFor(() => rig.kubelet.unhealthy(RTX).includes(GPU1), 3000, 'GPU1 unhealthy');
    expect(rig.scans - before).toBeGreaterThanOrEqual(1);
  });

  it('hot-remove drops a device, hot-add advertises a new one, each within 1 s', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    const rig = await rigWith(kernel, { rescanIntervalMs: 500 });
    const k = rig.kubelet;

    let t0 = performance.now();
    kernel.removeDevice(AUDIO1);
    kernel.removeDevice(GPU1);
    await k.waitFor(() => k.resource(RTX)!.devices.length === 1, 3000, 'GPU1 removed');
    const removeLatency = k.resource(RTX)!.updates.at(-1)!.at - t0;

    t0 = performance.now();
    kernel.addDevice(gpuDevice('0000:81:00.0', 50, 1));
    kernel.addDevice({ ...audioDevice('0000:81:00.1', 50, 1) });
    await k.waitFor(() => k.healthy(RTX).includes('0000:81:00.0'), 3000, 'hot-added GPU');
    const addLatency = k.resource(RTX)!.updates.at(-1)!.at - t0;
    expect(k.resource(RTX)!.devices.map((d) => d.ID)).toEqual([GPU0, '0000:81:00.0']);
    expect(removeLatency).toBeLessThan(1000);
    expect(addLatency).toBeLessThan(1000);
  });

  it('stops the resource server when its last device leaves the host, after pushing an empty list', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    const rig = await rigWith(kernel);
    for (const a of [AUDIO0, GPU0, AUDIO1, GPU1]) kernel.removeDevice(a);
    await rig.kubelet.waitFor(() => rig.kubelet.resource(RTX)!.devices.length === 0, 3000, 'empty list');
    await rig.kubelet.waitFor(() => !rig.kubelet.resource(RTX)!.connected, 3000, 'stream closed');
    await expect(stat(join(rig.dir, socketFileName(RTX, rig.dir)))).rejects.toThrow();
    expect(rig.plugins!.deviceSets().size).toBe(0);
  });

  it('re-registers after a kubelet restart (sockets wiped, kubelet.sock re-created)', async () => {
    const rig = await rigWith(new SimulatedKernel(twoRtxProfile()));
    await rig.kubelet.restart();
    await rig.kubelet.waitFor(() => rig.kubelet.resource(RTX)!.registrations.length === 2 && rig.kubelet.healthy(RTX).length === 2, 5000, 're-registration');
    // The socket came back and answers; kubelet dialled it inside Register.
    expect((await stat(join(rig.dir, socketFileName(RTX, rig.dir)))).isSocket()).toBe(true);
    await rig.kubelet.waitFor(() => rig.recorder.events.reregistered.length >= 1, 3000, 'reregistered recorded');
    expect(rig.recorder.events.reregistered.every(([r, t]) => r === RTX && ['kubelet_restart', 'socket_removed', 'stream_broken'].includes(t))).toBe(true);
    expect(rig.kubelet.registerCalls.every((c) => c.error === undefined)).toBe(true);
    const resp = await rig.kubelet.allocate(RTX, [[GPU0]]);
    expect(resp.container_responses[0]!.envs).toEqual({ PCI_RESOURCE_NVIDIA_COM_GA102_GEFORCE_RTX_3090: GPU0 });
  });

  it('re-registers after a kubelet restart with only the stat fallback watching the directory', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    const rig = await makeRig(kernel);
    rigs.push(rig);
    await rig.start({ noDirWatch: true });
    await rig.kubelet.waitFor(() => rig.kubelet.healthy(RTX).length === 2, 5000, 'registration');
    await rig.kubelet.restart();
    await rig.kubelet.waitFor(() => rig.kubelet.resource(RTX)!.registrations.length === 2 && rig.kubelet.healthy(RTX).length === 2, 5000, 're-registration');
    expect((await stat(join(rig.dir, socketFileName(RTX, rig.dir)))).isSocket()).toBe(true);
  });

  it('a Register in flight when our socket is wiped is cancelled and served again, not left to kubelet\'s 10 s dial', async () => {
    const rig = await rigWith(new SimulatedKernel(twoRtxProfile()));
    const socket = join(rig.dir, socketFileName(RTX, rig.dir));
    // The worst moment of a kubelet restart: the new kubelet wipes the directory after our worker checked its socket
    // and before kubelet dials it back. Kubelet then keeps dialing the gone socket for 10 s.
    rig.kubelet.beforeNextRegister = async () => {
      await unlink(socket);
    };
    rig.plugins!.manager.plugin(RTX)!.kick('retry');
    await rig.kubelet.waitFor(() => rig.kubelet.resource(RTX)!.registrations.length === 2 && rig.kubelet.healthy(RTX).length === 2, 9000, 're-registration');
    expect((await stat(socket)).isSocket()).toBe(true);
    // Ordering, not timing: we registered again while kubelet was still dialing for the first call (it answers that
    // one only when its 10 s dial gives up), so the first call did not hold up the re-registration.
    expect(rig.kubelet.registerCalls.filter((c) => c.error !== undefined)).toEqual([]);
    expect(rig.kubelet.registerCalls).toHaveLength(2);
  });

  it('re-registers when the ListAndWatch stream breaks (kubelet never re-dials)', async () => {
    const rig = await rigWith(new SimulatedKernel(twoRtxProfile()));
    rig.kubelet.breakStream(RTX);
    await rig.kubelet.waitFor(() => rig.kubelet.resource(RTX)!.registrations.length === 2 && rig.kubelet.healthy(RTX).length === 2, 5000, 're-registration');
    await rig.kubelet.waitFor(() => rig.recorder.events.reregistered.length >= 1, 3000, 'reregistered recorded');
    expect(rig.recorder.events.reregistered).toEqual([[RTX, 'stream_broken']]);
  });

  it('does not loop when kubelet drops the previous stream because we registered again', async () => {
    const rig = await rigWith(new SimulatedKernel(twoRtxProfile()));
    // Registering again while the first stream is open: the emulator, like kubelet replacing the
    // endpoint, cancels the old stream. That must not count as "stream broken".
    rig.plugins!.manager.plugin(RTX)!.kick('retry');
    await rig.kubelet.waitFor(() => rig.kubelet.resource(RTX)!.registrations.length === 2 && rig.kubelet.healthy(RTX).length === 2, 5000, 'second registration');
    await new Promise((r) => setTimeout(r, 800));
    expect(rig.kubelet.resource(RTX)!.registrations).toHaveLength(2);
    expect(rig.recorder.events.reregistered).toEqual([[RTX, 'retry']]);
  });

  it('keeps serving and retries with backoff when kubelet is not there yet', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    const rig = await makeRig(kernel, { kubelet: false });
    rigs.push(rig);
    await rig.start();
    expect(rig.recorder.events.registered).toContainEqual([RTX, false]);
    const kubelet = await FakeKubelet.start(rig.dir);
    try {
      await kubelet.waitFor(() => kubelet.healthy(RTX).length === 2, 5000, 'late registration');
    } finally {
      await kubelet.close();
    }
  });

  it('refuses to start over the live socket of another instance, and replaces a stale one', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    const rig = await rigWith(kernel);
    const second = await makeRig(kernel, { kubelet: false, dir: rig.dir });
    rigs.push(second);
    await expect(second.start()).rejects.toBeInstanceOf(ConflictError);
    // The first instance is untouched.
    expect((await rig.kubelet.allocate(RTX, [[GPU0]])).container_responses).toHaveLength(1);

    // A stale socket file (nobody listening) is removed and replaced.
    const staleDir = await makeRig(kernel);
    rigs.push(staleDir);
    const stalePath = join(staleDir.dir, socketFileName(RTX, staleDir.dir));
    // A crashed instance: its process died by SIGKILL, so nothing unlinked the socket file.
    const script = `require('net').createServer().listen(${JSON.stringify(stalePath)}, () => process.kill(process.pid, 'SIGKILL'))`;
    spawnSync(process.execPath, ['-e', script]);
    expect((await stat(stalePath)).isSocket()).toBe(true);
    await staleDir.start();
    await staleDir.kubelet.waitFor(() => staleDir.kubelet.healthy(RTX).length === 2, 5000, 'registration over stale socket');
  });

  it('stop() ends serving cleanly and never writes to the host', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    kernel.clearWriteLog();
    const rig = await rigWith(kernel);
    await rig.kubelet.allocate(RTX, [[GPU0]]);
    await rig.plugins!.stop();
    rig.plugins = undefined;
    await rig.kubelet.waitFor(() => !rig.kubelet.resource(RTX)!.connected, 3000, 'stream ended');
    expect(kernel.writeLog).toEqual([]);
    expect(kernel.state().devices.filter((d) => d.driver === 'vfio-pci').map((d) => d.address)).toEqual([GPU0, AUDIO0, GPU1, AUDIO1]);
    await expect(stat(join(rig.dir, socketFileName(RTX, rig.dir)))).rejects.toThrow();
    // Capacity stays, allocatable drops to 0 until a new instance registers.
    expect(rig.kubelet.unhealthy(RTX)).toEqual([GPU0, GPU1]);
  });

  it('GetPreferredAllocation packs onto one NUMA node and honours must-include', async () => {
    const rig = await rigWith(new SimulatedKernel(twoRtxProfile()));
    const r = await rig.kubelet.preferred(RTX, { available_deviceIDs: [GPU0, GPU1], must_include_deviceIDs: [GPU1], allocation_size: 1 });
    expect(r.container_responses[0]!.deviceIDs).toEqual([GPU1]);
    const two = await rig.kubelet.preferred(RTX, { available_deviceIDs: [GPU1, GPU0], must_include_deviceIDs: [], allocation_size: 2 });
    expect(two.container_responses[0]!.deviceIDs).toEqual([GPU0, GPU1]);
    // pre_start_required is false, but an (old) kubelet calling PreStartContainer gets an empty answer.
    expect(await rig.kubelet.preStart(RTX, [GPU0])).toEqual({});
  });

  it('uses configured resource names', async () => {
    const kernel = new SimulatedKernel(twoRtxProfile());
    const rig = await makeRig(kernel);
    rigs.push(rig);
    await rig.start({ resourceConfig: { overrides: [{ address: GPU1, resourceName: 'example.com/gpu-b' }] } });
    await rig.kubelet.waitFor(() => rig.kubelet.healthy('example.com/gpu-b').length === 1 && rig.kubelet.healthy(RTX).length === 1, 5000, 'two resources');
    const resp = await rig.kubelet.allocate('example.com/gpu-b', [[GPU1]]);
    expect(resp.container_responses[0]!.envs).toEqual({ 'PCI_RESOURCE_EXAMPLE_COM_GPU-B': GPU1 });
  });
});

