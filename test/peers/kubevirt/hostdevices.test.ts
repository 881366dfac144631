/**
 * Issue 11 item 4 (and item 3's PodResources guard): KubeVirt's own code consumes what we produce.
 *  - The real agent (simulated 16-GPU host, every GPU with its HDMI audio function in its IOMMU group)
 *    serves the device plugin to kubelet's real device manager; a virt-launcher pod is allocated through
 *    the manager; the env the manager builds from our Allocate responses goes through virt-launcher's
 *    address pools and host-device creation (kubevirt.io/kubevirt v1.8.0, test/peers/kubevirt).
 *  - The agent's in-use guard reads the upstream PodResources server fed by that manager.
 *  - The KubeVirt CR our operator writes goes through virt-handler's permitted-host-devices logic.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpusInUse } from '../../../src/agent/in-use.js';
import { discoverHost } from '../../../src/host/discover.js';
import type { NodeGpuPassthrough } from '../../../src/api/v1alpha1/index.js';
import { planKubeVirt } from '../../../src/operator/kubevirt.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';
import { PEERS_REQUIRED, peerBinary } from '../../support/peers.js';
import { KubeletDeviceManager, until, type ContainerOptions } from '../kubelet/harness.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
const kubeletBin = peerBinary('kubelet', 'kubelet-devicemanager');
const kubevirtBin = peerBinary('kubevirt', 'kubevirt-hostdevices');
const noLauncher = kubevirtBin.skip !== undefined;
const NODE = 'gpu-node-16';
const GPUS = 'example.com/a5000';
const HOSTDEVS = 'example.com/a5000-hostdev';
const FOR_GPUS = ['0000:11:00.0', '0000:1f:00.0'];
const FOR_HOSTDEVS = ['0000:2d:00.0', '0000:3b:00.0'];

function kubevirt(args: string[], input: unknown): { out: Record<string, unknown>; status: number } {
  try {
    return { out: JSON.parse(execFileSync(kubevirtBin.path!, args, { input: JSON.stringify(input), encoding: 'utf8' })) as Record<string, unknown>, status: 0 };
  } catch (err) {
    const e = err as { stdout?: string; status?: number };
    return { out: JSON.parse(e.stdout || '{}') as Record<string, unknown>, status: e.status ?? 1 };
  }
}

describe.skipIf(kubeletBin.skip !== undefined)(`KubeVirt host devices from our Allocate, through kubelet${kubeletBin.skip ? ` (skipped: ${kubeletBin.skip})` : ''}`, () => {
  let api: FakeApiServer;
  let kubelet: KubeletDeviceManager;
  let agent: ChildProcess;
  let agentLog = '';
  let dir: string;
  let pod: ContainerOptions;

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error('dist/cli/main.js missing: npm run build first');
    dir = await mkdtemp(join(tmpdir(), 'vh-kv-'));
    const pluginDir = join(dir, 'device-plugins');
    await mkdir(pluginDir);
    api = await FakeApiServer.start();
    api.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
    await writeFile(join(dir, 'kubeconfig'), api.kubeConfig().exportConfig());
    kubelet = KubeletDeviceManager.spawn(kubeletBin.path!);
    await kubelet.start(pluginDir, join(dir, 'pod-resources', 'kubelet.sock'));
    agent = spawn(process.execPath, [
      CLI, 'agent', '--profile', 'bench-16gpu', '--node-name', NODE, '--kubeconfig', join(dir, 'kubeconfig'),
      '--device-plugin-dir', pluginDir, '--pod-resources-socket', join(dir, 'pod-resources', 'kubelet.sock'),
      '--state-dir', join(dir, 'state'), '--metrics-addr', '127.0.0.1:0', '--resync-interval', '1s',
    ]);
    agent.stderr?.on('data', (d: Buffer) => (agentLog += d.toString()));
  });

  afterAll(async () => {
    agent?.kill('SIGKILL');
    await kubelet?.close();
    await api?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const nodeObject = () => api.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', NODE) as unknown as NodeGpuPassthrough | undefined;
  const phaseOf = (address: string) => nodeObject()?.status?.gpus?.find((g) => g.address === address);

  it('the agent prepares four GPUs (each with its audio function) and kubelet\u2019s manager admits a VM pod onto them', async () => {
    await until('inventory', () => nodeObject()?.status?.inventory, 60_000);
    const obj = nodeObject()!;
    api.seed('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', {
      ...(obj as unknown as Record<string, unknown>),
      spec: { gpus: [...FOR_GPUS.map((address) => ({ address, policy: 'vms', resourceName: GPUS })), ...FOR_HOSTDEVS.map((address) => ({ address, policy: 'vms', resourceName: HOSTDEVS }))] },
    });
    await until('capacity in kubelet', async () => {
      const c = await kubelet.capacity();
      return c.allocatable[GPUS] === 2 && c.allocatable[HOSTDEVS] === 2;
    }, 60_000);
    pod = await kubelet.allocate({ uid: 'vmi-1', name: 'virt-launcher-vm1', namespace: 'vms', container: 'compute', limits: { [GPUS]: 2, [HOSTDEVS]: 2 } });
    expect(pod.allocated).toEqual({ [GPUS]: FOR_GPUS, [HOSTDEVS]: FOR_HOSTDEVS });
    expect(Object.keys(pod.envs).sort()).toEqual(['PCI_RESOURCE_EXAMPLE_COM_A5000', 'PCI_RESOURCE_EXAMPLE_COM_A5000-HOSTDEV']);
  });

  it.skipIf(noLauncher)('virt-launcher gives every VM device a distinct GPU address we allocated, never an audio function', () => {
    const vmi = {
      env: pod.envs,
      gpus: [{ name: 'gpu1', deviceName: GPUS }, { name: 'gpu2', deviceName: GPUS }],
      hostDevices: [{ name: 'hd1', deviceName: HOSTDEVS }, { name: 'hd2', deviceName: HOSTDEVS }],
    };
    const { out, status } = kubevirt(['launcher'], vmi);
    expect(status, JSON.stringify(out)).toBe(0);
    const gpus = out['gpus'] as { alias: string; type: string; address: string }[];
    const hostDevices = out['hostDevices'] as { alias: string; type: string; address: string }[];
    expect(gpus.map((d) => [d.alias, d.type])).toEqual([['gpu-gpu1', 'pci'], ['gpu-gpu2', 'pci']]);
    expect(hostDevices.map((d) => [d.alias, d.type])).toEqual([['hostdevice-hd1', 'pci'], ['hostdevice-hd2', 'pci']]);
    const addresses = [...gpus, ...hostDevices].map((d) => d.address);
    expect(new Set(addresses).size).toBe(4);
    expect(gpus.map((d) => d.address).sort()).toEqual(FOR_GPUS);
    expect(hostDevices.map((d) => d.address).sort()).toEqual(FOR_HOSTDEVS);
    for (const a of addresses) expect(a).toMatch(/\.0$/); // the .1 HDMI audio functions are never handed over as devices
  });

  it.skipIf(noLauncher)('KubeVirt limit: one resource in both gpus and hostDevices of one VMI gets the same address twice', () => {
    const { out, status } = kubevirt(['launcher'], { env: pod.envs, gpus: [{ name: 'g', deviceName: GPUS }], hostDevices: [{ name: 'h', deviceName: GPUS }] });
    expect(status).toBe(0);
    expect((out['gpus'] as { address: string }[])[0]!.address).toBe((out['hostDevices'] as { address: string }[])[0]!.address);
  });

  it.skipIf(noLauncher)('more VM devices than allocated addresses: virt-launcher refuses the VMI', () => {
    const { out, status } = kubevirt(['launcher'], { env: pod.envs, gpus: [{ name: 'a', deviceName: GPUS }, { name: 'b', deviceName: GPUS }, { name: 'c', deviceName: GPUS }] });
    expect(status).toBe(1);
    expect(String(out['error'])).toMatch(/number of device plugin GPU/);
  });

  it('the in-use guard reads kubelet\u2019s PodResources server: a GPU the pod holds is withdrawn and not released until the pod ends', async () => {
    const obj = nodeObject()!;
    const keep = (obj.spec?.gpus ?? []).filter((g) => g.address !== FOR_GPUS[0]);
    api.seed('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', { ...(obj as unknown as Record<string, unknown>), spec: { gpus: keep } });
    await until('Releasing/InUse', () => phaseOf(FOR_GPUS[0]!)?.reason === 'InUse', 30_000);
    // Withdrawn: still in kubelet's capacity (the pod has it) but allocatable to no new pod.
    await until('withdrawn in kubelet', async () => {
      const c = await kubelet.capacity();
      return c.capacity[GPUS] === 2 && c.allocatable[GPUS] === 1;
    });
    await expect(kubelet.allocate({ uid: 'vmi-2', name: 'virt-launcher-vm2', namespace: 'vms', container: 'compute', limits: { [GPUS]: 2 } })).rejects.toThrow(/unavailable/);
    await kubelet.removePod('vmi-2');
    await kubelet.removePod('vmi-1');
    await until('released', () => phaseOf(FOR_GPUS[0]!)?.phase === 'Host', 30_000);
  });
});

const notRoot = process.getuid?.() === 0 ? undefined : 'needs root for a mount namespace (unshare -m)';
if (notRoot && PEERS_REQUIRED) throw new Error(`CI=true requires the real peers: virt-handler ${notRoot}`);
const handlerSkip = kubevirtBin.skip ?? notRoot;
describe.skipIf(handlerSkip !== undefined)(`virt-handler permitted host devices from the KubeVirt CR we write${handlerSkip ? ` (skipped: ${handlerSkip})` : ''}`, () => {
  let hostDir: string;
  const L40S = 'example.com/l40s';
  beforeAll(async () => {
    hostDir = await mkdtemp(join(tmpdir(), 'vh-kvh-'));
    const profile = await loadBuiltinProfile('server-aspeed-l40s-vfio');
    await materialiseProfile(profile, hostDir);
    // virt-handler reads the vendor:device pair from each device's `uevent` (PCI_ID=10DE:26B9), a file our
    // materialised tree (and the simulated kernel) do not have: written here as the kernel writes it.
    const snapshot = await discoverHost(new SimulatedKernel(profile));
    for (const f of snapshot.functions) {
      const uevent = [`DRIVER=${f.driver ?? ''}`, `PCI_ID=${f.vendorId.toUpperCase()}:${f.deviceId.toUpperCase()}`, `PCI_SLOT_NAME=${f.address}`].join('\n');
      await writeFile(join(hostDir, 'sys/bus/pci/devices', f.address, 'uevent'), `${uevent}\n`);
    }
  });
  afterAll(async () => {
    if (hostDir) await rm(hostDir, { recursive: true, force: true });
  });

  // virt-handler walks /sys/bus/pci/devices: run it in a private mount namespace with the tree on /sys.
  const handler = (cr: unknown) => {
    const out = execFileSync('unshare', ['-m', 'sh', '-c', 'mount --bind "$1" /sys && exec "$2" handler', 'sh', join(hostDir, 'sys'), kubevirtBin.path!], {
      input: JSON.stringify(cr),
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    return JSON.parse(out) as { plugins: { resourceName: string; deviceIds: string[] }[] };
  };
  const ours = planKubeVirt({ apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: {} }, [{ pciVendorSelector: '10DE:26B9', resourceName: L40S }])!;

  it('starts no KubeVirt plugin for the resources we register (externalResourceProvider: true)', () => {
    expect(ours.pciHostDevices).toEqual([{ pciVendorSelector: '10DE:26B9', resourceName: L40S, externalResourceProvider: true }]);
    const cr = { metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: { configuration: { permittedHostDevices: { pciHostDevices: ours.pciHostDevices } } } };
    expect(handler(cr).plugins.map((p) => p.resourceName)).not.toContain(L40S);
  });

  it('the form KubeVirt\u2019s docs show (no externalResourceProvider) starts KubeVirt\u2019s own plugin, with IOMMU group numbers as device IDs, which our in-use guard counts', async () => {
    const cr = { metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: { configuration: { permittedHostDevices: { pciHostDevices: [{ pciVendorSelector: '10DE:26B9', resourceName: L40S }] } } } };
    const plugins = handler(cr).plugins;
    const kv = plugins.find((p) => p.resourceName === L40S);
    const snapshot = await discoverHost(new SimulatedKernel(await loadBuiltinProfile('server-aspeed-l40s-vfio')));
    expect(kv?.deviceIds).toEqual(snapshot.gpus.filter((g) => g.fn.driver === 'vfio-pci').map((g) => String(g.fn.iommuGroup)).sort());
    expect(kv?.deviceIds).toContain('45'); // 0000:3b:00.0's group
    const held = gpusInUse(snapshot, [{ namespace: 'vms', pod: 'p', container: 'compute', resourceName: L40S, deviceId: '45' }]);
    expect([...held]).toEqual(['0000:3b:00.0']);
  });
});
