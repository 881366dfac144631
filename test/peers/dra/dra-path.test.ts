/**
 * Issue 13 item 4: the DRA path of `vfio-handoff agent --front-end dra` against the real peers, pinned by
 * test/peers/dra (k8s.io/kubernetes v1.34.4) and test/peers/kubevirt-dra (kubevirt.io/kubevirt v1.8.0):
 * - the real kube-apiserver accepts the node's ResourceSlice and the agent keeps it current on hot add/remove;
 * - the real kube-scheduler (its DynamicResources plugin: the structured-parameters allocator) allocates a
 *   claim for a DeviceClass from deploy/ to a GPU of that slice;
 * - kubelet's own DRA manager, behind kubelet's own plugin manager, registers the plugin from its registration
 *   socket and drives NodePrepareResources / NodeUnprepareResources; the host (a materialised tree served by
 *   the simulated driver core) shows the GPU's group on vfio-pci after prepare and back on nvidia after unprepare;
 * - KubeVirt's DRA metadata reader finds the metadata file through the CDI mounts kubelet was given and gets the
 *   PCI address, and virt-launcher's GPU host-device builder turns it into the libvirt hostdev.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { ControlPlane, controlPlaneBinaries } from '../../support/control-plane.js';
import { peerBinary } from '../../support/peers.js';
import { TreeKernel } from '../../support/tree-kernel.js';
import { Discovery, REPO_ROOT, deployToolsMissing, kustomize, until, type Obj } from '../control-plane/support.js';
import { KubeletDra, applyCdiMounts, readKubevirtMetadata, startScheduler } from './harness.js';

const bins = controlPlaneBinaries();
const scheduler = peerBinary('dra', 'kube-scheduler');
const kubeletBin = peerBinary('dra', 'kubelet-dra');
const reader = peerBinary('kubevirt-dra', 'kubevirt-dra-reader');
const skip = bins.skip ?? scheduler.skip ?? kubeletBin.skip ?? reader.skip ?? deployToolsMissing();

const CLI = join(REPO_ROOT, 'dist/cli/main.js');
const DRIVER = 'gpu.handoff.dev';
const NODE = 'node-a';
const NS = 'vms';
const H100 = ['0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0'] as const;
const ASPEED = '0000:02:00.0';
/** deploy/dra's DeviceClass of NVIDIA GPUs that are not the boot GPU. */
const NVIDIA_CLASS = 'nvidia.gpu.handoff.dev';
/** What a KubeVirt user asking for an H100 adds: a device-ID selector on our attributes (CEL). */
const H100_SELECTOR = { cel: { expression: 'device.attributes["gpu.handoff.dev"].deviceID == "2331"' } };
const deviceName = (address: string): string => `gpu-${address.replace(/[:.]/g, '-')}`;
const SLICES = '/apis/resource.k8s.io/v1/resourceslices';
const CLAIMS = `/apis/resource.k8s.io/v1/namespaces/${NS}/resourceclaims`;
const PODS = `/api/v1/namespaces/${NS}/pods`;

interface Attr { string?: string; int?: number; bool?: boolean }
interface Slice extends Obj { spec: { driver: string; nodeName?: string; pool: { name: string; generation: number }; devices?: { name: string; attributes?: Record<string, Attr> }[] } }
interface Claim extends Obj { status?: { allocation?: { devices?: { results?: { request: string; driver: string; pool: string; device: string }[] } }; reservedFor?: { name: string }[] } }
interface Pod extends Obj { spec: { nodeName?: string }; status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] } }

describe.skipIf(skip)(`DRA path against kube-apiserver, kube-scheduler, kubelet's DRA manager and KubeVirt's reader${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let cp: ControlPlane;
  let dir: string;
  let tk: TreeKernel;
  let kubelet: KubeletDra;
  let sched: ReturnType<typeof startScheduler>;
  let agent: ChildProcess;
  let agentLog = '';
  let cdiDir: string;
  const profileDevices = new Map<string, unknown>();

  const slices = async (): Promise<Slice[]> =>
    (await cp.ok<{ items: Slice[] }>('GET', `${SLICES}?fieldSelector=${encodeURIComponent(`spec.nodeName=${NODE},spec.driver=${DRIVER}`)}`)).items;
  const sliceDevices = async (): Promise<Map<string, Record<string, Attr>>> => {
    const out = new Map<string, Record<string, Attr>>();
    for (const s of await slices()) for (const d of s.spec.devices ?? []) out.set(d.name, d.attributes ?? {});
    return out;
  };
  const driverOf = (address: string): string | undefined => tk.kernel.state().devices.find((d) => d.address === address)?.driver;
  const logs = (): string => `--- agent\n${agentLog.slice(-3000)}\n--- kubelet\n${kubelet?.logs.slice(-3000)}\n--- scheduler\n${sched?.logs().slice(-3000)}`;

  beforeAll(async () => {
    if (skip !== undefined || bins.skip !== undefined) return;
    if (!existsSync(CLI)) throw new Error('dist/cli/main.js missing: npm run build first');
    dir = await mkdtemp(join(tmpdir(), 'vh-dra-'));
    cdiDir = join(dir, 'cdi');
    cp = await ControlPlane.start(bins);
    const discovery = new Discovery(cp);
    // The base install and the DRA front end's opt-in kustomization (DeviceClasses, RBAC, admission policy).
    const objects = [...kustomize('deploy'), ...kustomize('deploy/dra')].filter((o) => !o.apiVersion.startsWith('monitoring.coreos.com'));
    for (const o of objects.filter((x) => x.kind === 'Namespace' || x.kind === 'CustomResourceDefinition')) await cp.apply(await discovery.path(o), o);
    for (const o of objects.filter((x) => x.kind === 'CustomResourceDefinition')) await cp.waitEstablished(o.metadata.name);
    for (const o of objects.filter((x) => x.kind !== 'Namespace' && x.kind !== 'CustomResourceDefinition')) {
      const r = await cp.apply(await discovery.path(o), o);
      if (r.status >= 300) throw new Error(`${o.kind}/${o.metadata.name}: ${r.text}`);
    }
    // A node as kubelet registers it, Ready: without a node lifecycle controller the not-ready taint the API
    // server puts on a new node would never go away.
    await cp.ok('POST', '/api/v1/nodes', { body: { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } } });
    await cp.ok('PATCH', `/api/v1/nodes/${NODE}`, { contentType: 'application/merge-patch+json', body: { spec: { taints: null } } });
    const resources = { pods: '110', cpu: '64', memory: '512Gi' };
    await cp.ok('PATCH', `/api/v1/nodes/${NODE}/status`, {
      contentType: 'application/merge-patch+json',
      body: { status: { capacity: resources, allocatable: resources, conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', lastHeartbeatTime: new Date().toISOString() }] } },
    });
    await cp.ok('POST', '/api/v1/namespaces', { body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } } });
    // No kube-controller-manager here to create it; pod admission needs the ServiceAccount.
    await cp.ok('POST', `/api/v1/namespaces/${NS}/serviceaccounts`, { body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } } });

    const profile = await loadBuiltinProfile('server-aspeed-4xh100');
    for (const d of profile.devices) profileDevices.set(d.address, d);
    tk = await TreeKernel.start(profile, join(dir, 'host'));

    kubelet = KubeletDra.spawn(kubeletBin.path!);
    await kubelet.start({ registryDir: join(dir, 'plugins_registry'), stateDir: join(dir, 'kubelet-state'), kubeconfig: cp.writeKubeconfig('kubelet', cp.adminToken), nodeName: NODE });

    const agentKubeconfig = cp.writeKubeconfig(NODE, await cp.podBoundToken('vfio-handoff', 'vfio-handoff-dra', NODE));
    agent = spawn(process.execPath, [
      CLI, 'agent', '--front-end', 'dra', '--host-root', tk.root, '--node-name', NODE, '--kubeconfig', agentKubeconfig,
      '--state-dir', join(dir, 'agent-state'), '--plugin-registry-dir', join(dir, 'plugins_registry'),
      '--dra-plugin-dir', join(dir, 'plugins', DRIVER), '--cdi-dir', cdiDir, '--rescan-interval', '300ms',
      '--metrics-addr', '', '--log-level', 'debug',
    ], { env: tk.env(), stdio: ['ignore', 'pipe', 'pipe'] });
    // The logger writes JSON lines to stdout; a crash lands on stderr.
    for (const stream of [agent.stdout, agent.stderr]) stream?.on('data', (d: Buffer) => (agentLog += d.toString()));

    sched = startScheduler(scheduler.path!, cp.writeKubeconfig('scheduler', cp.adminToken));
  });

  afterAll(async () => {
    agent?.kill('SIGKILL');
    sched?.proc.kill('SIGKILL');
    await kubelet?.close();
    await tk?.stop();
    await cp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('kube-apiserver accepts one ResourceSlice for the node: a device per GPU, with the attributes KubeVirt and the scheduler use', async () => {
    const all = [ASPEED, ...H100].map(deviceName).sort();
    const devices = await until(`the ResourceSlice of ${NODE}\n${logs()}`, async () => {
      const d = await sliceDevices();
      return d.size === all.length ? d : undefined;
    }, 60_000);
    expect([...devices.keys()].sort()).toEqual(all);
    for (const a of H100) {
      const attrs = devices.get(deviceName(a))!;
      expect(attrs['resource.kubernetes.io/pciBusID']).toEqual({ string: a });
      expect(attrs['vendorID']).toEqual({ string: '10de' });
      expect(attrs['deviceID']).toEqual({ string: '2331' });
      expect(attrs['bootVGA']).toEqual({ bool: false });
    }
    // The BMC's VGA is offered too, marked as the boot GPU: a claim must ask for it (and the node allow it).
    expect(devices.get(deviceName(ASPEED))!['bootVGA']).toEqual({ bool: true });
    const [slice] = await slices();
    expect(slice!.spec.driver).toBe(DRIVER);
    expect(slice!.spec.nodeName).toBe(NODE);
  });

  it('a hot-removed GPU leaves the slice, and comes back when it is hot-added again', async () => {
    const before = (await slices())[0]!.spec.pool.generation;
    tk.kernel.removeDevice(H100[3]);
    await tk.changed();
    await until(`${H100[3]} gone from the slice\n${logs()}`, async () => !(await sliceDevices()).has(deviceName(H100[3])), 30_000);
    expect([...(await sliceDevices()).keys()].sort()).toEqual([ASPEED, ...H100.slice(0, 3)].map(deviceName).sort());
    tk.kernel.addDevice(profileDevices.get(H100[3]) as Parameters<TreeKernel['kernel']['addDevice']>[0]);
    await tk.changed();
    await until(`${H100[3]} back in the slice\n${logs()}`, async () => (await sliceDevices()).has(deviceName(H100[3])), 30_000);
    expect((await slices())[0]!.spec.pool.generation).toBeGreaterThan(before);
  });

  it("kubelet's plugin manager registers the driver from its registration socket and picks the v1 DRA service", async () => {
    await until(`kubelet registered ${DRIVER}\n${logs()}`, async () => (await kubelet.registered(DRIVER)).registered, 30_000);
    const line = kubelet.logs.split('\n').find((l) => l.includes('Registered DRA plugin'));
    console.info(`[peers] kubelet: ${line}`);
    expect(line).toMatch(new RegExp(`driverName="${DRIVER.replace(/\./g, '\\.')}".*chosenService="v1\\.DRAPlugin"`));
  });

  let allocated = '';
  let cdiIds: string[] = [];

  it("kube-scheduler allocates a claim of deploy/dra's NVIDIA DeviceClass to a GPU of our slice and binds the pod to the node", async () => {
    expect(kustomize('deploy/dra').filter((o) => o.kind === 'DeviceClass').map((o) => o.metadata.name)).toContain(NVIDIA_CLASS);
    await cp.ok('POST', CLAIMS, {
      body: { apiVersion: 'resource.k8s.io/v1', kind: 'ResourceClaim', metadata: { name: 'gpu-claim' }, spec: { devices: { requests: [{ name: 'gpu', exactly: { deviceClassName: NVIDIA_CLASS, selectors: [H100_SELECTOR] } }] } } },
    });
    await cp.ok('POST', PODS, {
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'virt-launcher-vm1' },
        spec: {
          containers: [{ name: 'compute', image: 'registry.invalid/virt-launcher:v1.8.0', resources: { claims: [{ name: 'gpus', request: 'gpu' }] } }],
          resourceClaims: [{ name: 'gpus', resourceClaimName: 'gpu-claim' }],
        },
      },
    });
    const node = await until(`pod bound\n${logs()}`, async () => (await cp.ok<Pod>('GET', `${PODS}/virt-launcher-vm1`)).spec.nodeName, 90_000);
    expect(node).toBe(NODE);
    const claim = await cp.ok<Claim>('GET', `${CLAIMS}/gpu-claim`);
    const results = claim.status?.allocation?.devices?.results ?? [];
    expect(results).toHaveLength(1);
    expect(results[0]!.driver).toBe(DRIVER);
    expect(results[0]!.request).toBe('gpu');
    expect((await sliceDevices()).has(results[0]!.device)).toBe(true);
    expect(claim.status?.reservedFor?.map((r) => r.name)).toEqual(['virt-launcher-vm1']);
    console.info(`[peers] kube-scheduler: claim gpu-claim allocated ${JSON.stringify(results)}, pod on ${node}`);
    allocated = H100.find((a) => deviceName(a) === results[0]!.device)!;
    expect(allocated).toBeDefined();
    // Scheduling alone hands nothing off: the GPU stays on its host driver until kubelet prepares the claim.
    await tk.settle();
    expect(driverOf(allocated)).toBe('nvidia');
  });

  it('a claim the slice cannot satisfy stays unallocated and its pod unschedulable (five H100s of a node with four)', async () => {
    await cp.ok('POST', CLAIMS, {
      body: { apiVersion: 'resource.k8s.io/v1', kind: 'ResourceClaim', metadata: { name: 'five-gpus' }, spec: { devices: { requests: [{ name: 'gpu', exactly: { deviceClassName: NVIDIA_CLASS, selectors: [H100_SELECTOR], allocationMode: 'ExactCount', count: 5 } }] } } },
    });
    await cp.ok('POST', PODS, {
      body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'too-greedy' }, spec: { containers: [{ name: 'c', image: 'registry.invalid/x:0', resources: { claims: [{ name: 'g' }] } }], resourceClaims: [{ name: 'g', resourceClaimName: 'five-gpus' }] } },
    });
    const cond = await until('pod marked unschedulable', async () => (await cp.ok<Pod>('GET', `${PODS}/too-greedy`)).status?.conditions?.find((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable'), 60_000);
    expect(cond.message).toMatch(/cannot allocate all claims/);
    expect((await cp.ok<Claim>('GET', `${CLAIMS}/five-gpus`)).status?.allocation).toBeUndefined();
    await cp.ok('DELETE', `${PODS}/too-greedy`);
  });

  it("kubelet's DRA manager prepares the claim through our plugin: the GPU's group goes to vfio-pci, kubelet gets its CDI devices", async () => {
    const { cdiDevices } = await kubelet.prepare(NS, 'virt-launcher-vm1');
    cdiIds = cdiDevices['compute'] ?? [];
    console.info(`[peers] kubelet DRA manager: prepared, CDI devices per container ${JSON.stringify(cdiDevices)}`);
    expect(cdiIds).toContain(`handoff.dev/gpu=${deviceName(allocated)}`);
    await tk.settle();
    expect(driverOf(allocated)).toBe('vfio-pci');
    // Only the claimed GPU moved.
    for (const a of H100.filter((x) => x !== allocated)) expect(driverOf(a)).toBe('nvidia');
    expect(kubelet.logs).toMatch(/NodePrepareResources/);
  });

  it("KubeVirt v1.8.0's reader finds the metadata file through kubelet's CDI mounts and gets the GPU's PCI address", async () => {
    const containerRoot = join(dir, 'virt-launcher-root');
    const mounted = applyCdiMounts(cdiDir, cdiIds, containerRoot);
    const vmi = {
      spec: {
        resourceClaims: [{ name: 'gpus', resourceClaimName: 'gpu-claim' }],
        domain: { devices: { gpus: [{ name: 'gpu1', claimName: 'gpus', requestName: 'gpu' }] } },
      },
    };
    const probe = readKubevirtMetadata(reader.path!, join(containerRoot, '/var/run/dra-device-attributes'), vmi);
    const out = readKubevirtMetadata(reader.path!, join(containerRoot, probe.defaultBasePath), vmi);
    console.info(`[peers] KubeVirt reader (${probe.defaultBasePath}): ${JSON.stringify(out)}`);
    expect(out.pciAddresses, `CDI mounts: ${JSON.stringify(mounted)}`).toEqual({ gpu1: allocated });
    const [bus, slot] = [allocated.slice(5, 7), allocated.slice(8, 10)];
    expect(out.hostDevices).toEqual([{ alias: 'dra-gpu-gpu1', type: 'pci', managed: 'no', address: { type: 'pci', domain: '0x0000', bus: `0x${bus}`, slot: `0x${slot}`, function: '0x0' } }]);
  });

  it("the reader finds nothing for a claim our plugin never prepared (the hostile case: it does not guess)", () => {
    const containerRoot = join(dir, 'virt-launcher-root');
    const vmi = { spec: { resourceClaims: [{ name: 'gpus', resourceClaimName: 'five-gpus' }], domain: { devices: { gpus: [{ name: 'gpu1', claimName: 'gpus', requestName: 'gpu' }] } } } };
    const out = readKubevirtMetadata(reader.path!, join(containerRoot, '/var/run/dra-device-attributes'), vmi);
    expect(out.pciAddresses['gpu1']).toMatch(/^error: metadata not found for claim "five-gpus"/);
    expect(out.hostDevicesError).toMatch(/no mdevUUID or pciBusID/);
  });

  it('kubelet restarts: it wipes the node\'s ResourceSlices at start, the agent publishes again, kubelet re-registers the plugin, the prepared claim is kept', async () => {
    await kubelet.close();
    const before = (await slices()).length;
    kubelet = KubeletDra.spawn(kubeletBin.path!);
    await kubelet.start({ registryDir: join(dir, 'plugins_registry'), stateDir: join(dir, 'kubelet-state'), kubeconfig: cp.writeKubeconfig('kubelet', cp.adminToken), nodeName: NODE });
    await until(`kubelet wiped the slices at start\n${logs()}`, () => kubelet.logs.includes('Deleted ResourceSlices'), 30_000);
    await until(`kubelet re-registered ${DRIVER}\n${logs()}`, async () => (await kubelet.registered(DRIVER)).registered, 30_000);
    const devices = await until(`the slice published again after kubelet wiped it\n${logs()}`, async () => {
      const d = await sliceDevices();
      return d.size === H100.length + 1 ? d : undefined;
    }, 30_000);
    expect(before).toBe(1);
    expect(devices.has(deviceName(allocated))).toBe(true);
    await tk.settle();
    expect(driverOf(allocated)).toBe('vfio-pci');
    expect(await readFile(join(dir, 'kubelet-state', 'dra_manager_state'), 'utf8')).toContain('gpu-claim');
  });

  it("kubelet's DRA manager unprepares the claim: the GPU goes back to nvidia and kubelet's checkpoint forgets the claim", async () => {
    await kubelet.unprepare(NS, 'virt-launcher-vm1');
    await tk.settle();
    await until(`${allocated} back on nvidia`, async () => {
      await tk.settle();
      return driverOf(allocated) === 'nvidia';
    }, 30_000);
    for (const a of H100) expect(driverOf(a)).toBe('nvidia');
    expect(tk.refused).toEqual([]);
    const checkpoint = await readFile(join(dir, 'kubelet-state', 'dra_manager_state'), 'utf8');
    expect(checkpoint).not.toContain('gpu-claim');
  });
});
