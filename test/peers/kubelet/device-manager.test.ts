/**
 * Issue 11 item 3: kubelet's real device manager (k8s.io/kubernetes v1.34.4 pkg/kubelet/cm/devicemanager,
 * built by scripts/build-peers.mjs from test/peers/kubelet) drives the real `vfio-handoff plugin` process
 * over their unix sockets. The host is a materialised tree of the L40S server profile (four GPUs on
 * vfio-pci, NUMA 0 and 1). What kubelet sees is read back from the manager itself (GetCapacity,
 * GetAllocatableDevices, Allocate + GetDeviceRunContainerOptions, its checkpoint file, its own logs).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { KUBELET_RESOURCE_NAME_CASES } from '../../support/resource-name-cases.js';
import { peerBinary } from '../../support/peers.js';
import { KubeletDeviceManager, until } from './harness.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
const bin = peerBinary('kubelet', 'kubelet-devicemanager');
const L40S = 'nvidia.com/AD102GL_L40S';
// 88 characters: far past the 57 that used to fit beside a directory as long as kubelet's default.
const LONG = `vfio-handoff.example.com/${'l40s-'.repeat(12)}gpu`;
const [GPU0, GPU1, GPU2, GPU3] = ['0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0'] as const;

describe.skipIf(bin.skip !== undefined)(`kubelet device manager ↔ vfio-handoff plugin${bin.skip ? ` (skipped: ${bin.skip})` : ''}`, () => {
  let kubelet: KubeletDeviceManager;
  let plugin: ChildProcess;
  let pluginLog = '';
  let dir: string;
  let hostDir: string;
  let pluginDir: string;
  let l40sOfPod1 = '';

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error('dist/cli/main.js missing: npm run build first');
    dir = await mkdtemp(join(tmpdir(), 'vh-kl-'));
    // As long as /var/lib/kubelet/device-plugins (31 bytes), so socket paths are as long as on a node.
    pluginDir = join(dir, 'd'.repeat(Math.max(1, 31 - dir.length - 1)));
    hostDir = join(dir, 'host');
    await mkdir(pluginDir);
    await materialiseProfile(await loadBuiltinProfile('server-aspeed-l40s-vfio'), hostDir);
    await writeFile(join(dir, 'resources.yaml'), JSON.stringify({ overrides: [{ address: GPU0, resourceName: LONG }, { address: GPU1, resourceName: LONG }, { vendorDevice: '10de:26b9', resourceName: L40S }] }));
    kubelet = KubeletDeviceManager.spawn(bin.path!);
    await kubelet.start(pluginDir, join(dir, 'pod-resources', 'kubelet.sock'));
    plugin = spawn(process.execPath, [
      CLI, 'plugin', '--host-root', hostDir, '--device-plugin-dir', pluginDir, '--resource-config', join(dir, 'resources.yaml'),
      '--rescan-interval', '200ms', '--log-level', 'debug',
    ]);
    plugin.stderr?.on('data', (d: Buffer) => (pluginLog += d.toString()));
  });

  afterAll(async () => {
    plugin?.kill('SIGKILL');
    await kubelet?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('kubelet accepts exactly the resource names our rule accepts (its own IsExtendedResourceName)', async () => {
    const verdicts = await kubelet.isExtendedResourceName(KUBELET_RESOURCE_NAME_CASES.map(([n]) => n));
    expect(KUBELET_RESOURCE_NAME_CASES.map(([n], i) => [n, verdicts[i]])).toEqual(KUBELET_RESOURCE_NAME_CASES.map(([n, v]) => [n, v]));
  });

  it('registers both resources, the 88-character name too, with their NUMA topology', async () => {
    const cap = await until('both resources registered', async () => {
      const c = await kubelet.capacity();
      return c.capacity[L40S] === 2 && c.capacity[LONG] === 2 ? c : undefined;
    });
    expect(cap.allocatable).toEqual({ [L40S]: 2, [LONG]: 2 });
    const devices = await kubelet.devices();
    expect(devices[LONG]).toEqual({ [GPU0]: { health: 'Healthy', numa: [0] }, [GPU1]: { health: 'Healthy', numa: [0] } });
    expect(devices[L40S]).toEqual({ [GPU2]: { health: 'Healthy', numa: [1] }, [GPU3]: { health: 'Healthy', numa: [1] } });
    const sockets = (await readdir(pluginDir)).filter((f) => f.endsWith('.sock'));
    for (const s of sockets) expect(Buffer.byteLength(join(pluginDir, s))).toBeLessThanOrEqual(107);
    expect(kubelet.logs).not.toMatch(/failed to dial device plugin/i);
  });

  it('counts an unhealthy GPU in capacity but not in allocatable, and recovers', async () => {
    const groupNode = join(hostDir, 'dev/vfio/45'); // GPU1's group
    await unlink(groupNode);
    const cap = await until('GPU1 unhealthy in kubelet', async () => {
      const c = await kubelet.capacity();
      return c.allocatable[LONG] === 1 ? c : undefined;
    });
    expect(cap.capacity[LONG]).toBe(2);
    // kubelet's allocatable device list (what PodResources GetAllocatableResources serves) leaves it out.
    expect(Object.keys((await kubelet.devices())[LONG]!)).toEqual([GPU0]);
    await writeFile(groupNode, '');
    await until('GPU1 healthy again', async () => (await kubelet.capacity()).allocatable[LONG] === 2);
  });

  it('allocates for a pod through the manager: preferred allocation asked (we advertise it), the container response used', async () => {
    const opts = await kubelet.allocate({ uid: 'pod-1', name: 'virt-launcher-vm1', namespace: 'vms', container: 'compute', limits: { [L40S]: 1, [LONG]: 2 } });
    expect(opts.allocated[LONG]).toEqual([GPU0, GPU1]);
    expect(opts.allocated[L40S]).toHaveLength(1);
    const l40s = opts.allocated[L40S]![0]!;
    l40sOfPod1 = l40s;
    expect(opts.envs).toEqual({
      PCI_RESOURCE_NVIDIA_COM_AD102GL_L40S: l40s,
      [`PCI_RESOURCE_${LONG.toUpperCase().replaceAll('/', '_').replaceAll('.', '_')}`]: expect.stringMatching(/^0000:(18|3b):00\.0,0000:(18|3b):00\.0$/),
    });
    const hostPaths = (opts.devices ?? []).map((d) => d.pathOnHost);
    expect(hostPaths).toEqual(expect.arrayContaining(['/dev/vfio/vfio', '/dev/vfio/45']));
    // kubelet's own decision, from its log: it asked our plugin because GetDevicePluginOptions said so.
    expect(kubelet.logs).toMatch(new RegExp(`Issuing a GetPreferredAllocation call for container.*resourceName="${L40S}"`));
    expect(kubelet.logs).not.toMatch(/Plugin options indicate to skip GetPreferredAllocation/);
  });

  it('records the allocation and the registered devices in kubelet\u2019s checkpoint', async () => {
    const cp = await kubelet.checkpoint();
    const entries = (cp.Data.PodDeviceEntries ?? []).filter((e) => e.PodUID === 'pod-1');
    expect(entries.map((e) => [e.ContainerName, e.ResourceName, Object.values(e.DeviceIDs).flat().sort()]).sort()).toEqual(
      [
        ['compute', L40S, [l40sOfPod1]],
        ['compute', LONG, [GPU0, GPU1]],
      ].sort(),
    );
    expect(Object.keys(cp.Data.RegisteredDevices ?? {}).sort()).toEqual([LONG, L40S].sort());
  });

  it('re-registers within 5 s when kubelet restarts and wipes the socket directory; the checkpoint keeps the pod', async () => {
    await kubelet.stop();
    const started = Date.now();
    await kubelet.start(pluginDir, join(dir, 'pod-resources', 'kubelet.sock'));
    // A new manager starts with zero capacity for checkpointed resources until their plugins register again.
    let last: unknown;
    await until('re-registered', async () => {
      const c = await kubelet.capacity();
      last = c;
      return c.allocatable[L40S] === 2 && c.allocatable[LONG] === 2 ? true : undefined;
    }, 10_000).catch((err: Error) => {
      throw new Error(`${err.message}: kubelet capacity ${JSON.stringify(last)}; plugin log tail ${pluginLog.slice(-3000)}`);
    });
    const elapsed = Date.now() - started;
    expect(elapsed).toBeLessThan(5_000);
    const cp = await kubelet.checkpoint();
    expect((cp.Data.PodDeviceEntries ?? []).filter((e) => e.PodUID === 'pod-1')).toHaveLength(2);
    // Which signal reaches the plugin first is a race: kubelet's stop closes the ListAndWatch streams, and its new
    // socket (or our wiped one) shows up in the directory watch. Any of the three is a detection of this restart;
    // a bare periodic 'retry' is not.
    expect(pluginLog).toMatch(/"trigger":"(kubelet_restart|socket_removed|stream_broken)","msg":"registered with kubelet"/);
  });
});
