import * as grpc from '@grpc/grpc-js';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { InUseError } from '../../../src/core/errors.js';
import { parsePciAddress } from '../../../src/core/pci-address.js';
import { silentLogger } from '../../../src/core/logger.js';
import { unixTarget } from '../../../src/deviceplugin/api.js';
import { loadDraApi, type Claim, type DraPluginClient, type NodePrepareResourcesResponse, type NodeUnprepareResourcesResponse, type PluginInfo } from '../../../src/dra/api.js';
import { FileClaimCheckpoint } from '../../../src/dra/checkpoint.js';
import { MemoryClaimSource } from '../../../src/dra/claim-sources.js';
import type { ResourceClaim } from '../../../src/dra/claim.js';
import { DraDriver, type DraPolicy } from '../../../src/dra/driver.js';
import { gpuFactsReader } from '../../../src/dra/facts.js';
import { DraPluginServer } from '../../../src/dra/grpc-server.js';
import { nodeDraFiles } from '../../../src/dra/files-node.js';
import { CdiSpecWriter } from '../../../src/cdi/writer.js';
import { cdiSpecProblems } from '../../support/cdi-schema.js';
import { NodeSpecDir } from '../../../src/state/spec-dir.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';
import { twoGpusOneGroup } from '../../../src/testing/host-fixtures.js';

const NODE = 'node-a';
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A ResourceClaim as the scheduler leaves it: allocated devices of our driver in this node's pool. */
function claim(name: string, uid: string, devices: { request?: string; device: string; pool?: string }[], config?: object, source = 'FromClaim'): ResourceClaim {
  return {
    apiVersion: 'resource.k8s.io/v1',
    kind: 'ResourceClaim',
    metadata: { name, namespace: 'vms', uid },
    status: {
      allocation: {
        devices: {
          results: devices.map((d) => ({ request: d.request ?? 'gpu', driver: 'gpu.handoff.dev', pool: d.pool ?? NODE, device: d.device })),
          ...(config ? { config: [{ source, requests: [], opaque: { driver: 'gpu.handoff.dev', parameters: config } }] } : {}),
        },
      },
    },
  };
}

async function setup(
  profile: string,
  policy: DraPolicy = { allowBootGpu: false, keepOnVfio: false },
  shared?: { dir: string; kernel: SimulatedKernel; store: MemoryStateStore },
  wrap: (engine: HandoffEngine) => Pick<HandoffEngine, 'prepare' | 'release' | 'discover'> = (e) => e,
) {
  const dir = shared?.dir ?? (await mkdtemp(join(tmpdir(), 'dra-')));
  if (!shared) cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const kernel = shared?.kernel ?? new SimulatedKernel(await loadBuiltinProfile(profile));
  const store = shared?.store ?? new MemoryStateStore();
  const engine = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 500 });
  const claims = new MemoryClaimSource();
  const errors: string[] = [];
  const driver = new DraDriver({
    nodeName: NODE,
    engine: wrap(engine),
    claims,
    checkpoint: new FileClaimCheckpoint(join(dir, 'state', 'dra-claims.json'), nodeDraFiles),
    policy,
    metadataDir: join(dir, 'plugins', 'metadata'),
    cdiDir: join(dir, 'cdi'),
    cdi: new CdiSpecWriter({ dir: new NodeSpecDir({ dir: join(dir, 'cdi') }), logger: silentLogger }),
    files: nodeDraFiles,
    facts: gpuFactsReader(kernel),
    clock: realClock,
    logger: silentLogger,
    onClaimError: (c, op, reason) => errors.push(`${op} ${c.name} ${reason}`),
  });
  const api = loadDraApi();
  const server = new DraPluginServer({ api, driver, registrationSocket: join(dir, 'registry', 'gpu.handoff.dev-reg.sock'), draSocket: join(dir, 'plugins', 'dra.sock'), logger: silentLogger });
  await server.start();
  cleanups.push(() => server.stop());
  const v1 = new api.DraV1Client(unixTarget(join(dir, 'plugins', 'dra.sock')), grpc.credentials.createInsecure());
  const v1beta1 = new api.DraV1beta1Client(unixTarget(join(dir, 'plugins', 'dra.sock')), grpc.credentials.createInsecure());
  cleanups.push(async () => {
    v1.close();
    v1beta1.close();
  });
  const call = <R>(client: DraPluginClient, method: 'NodePrepareResources' | 'NodeUnprepareResources', claims: Claim[]) =>
    new Promise<R>((resolve, reject) => client[method]({ claims }, { deadline: Date.now() + 30_000 }, (err, res) => (err ? reject(err) : resolve(res as R))));
  return {
    dir,
    kernel,
    store,
    claims,
    errors,
    api,
    prepare: (cs: Claim[], client = v1) => call<NodePrepareResourcesResponse>(client, 'NodePrepareResources', cs),
    unprepare: (cs: Claim[], client = v1) => call<NodeUnprepareResourcesResponse>(client, 'NodeUnprepareResources', cs),
    v1beta1,
    stop: () => server.stop(),
  };
}

async function driverOf(kernel: SimulatedKernel, addr: string): Promise<string | undefined> {
  return (await kernel.readLink(`sys/bus/pci/devices/${addr}/driver`))?.split('/').pop();
}

const ref = (name: string, uid: string): Claim => ({ namespace: 'vms', name, uid });

describe('DRA kubelet plugin over gRPC on a simulated server (ASPEED BMC + 4× H100 on nvidia)', () => {
  it('registration: GetInfo names a DRAPlugin gpu.handoff.dev, its DRA socket and both service versions', async () => {
    const t = await setup('server-aspeed-4xh100');
    const reg = new t.api.RegistrationClient(unixTarget(join(t.dir, 'registry', 'gpu.handoff.dev-reg.sock')), grpc.credentials.createInsecure());
    const info = await new Promise<PluginInfo>((resolve, reject) => reg.GetInfo({}, {}, (err, r) => (err ? reject(err) : resolve(r!))));
    expect(info).toEqual({
      type: 'DRAPlugin',
      name: 'gpu.handoff.dev',
      endpoint: join(t.dir, 'plugins', 'dra.sock'),
      supported_versions: ['v1.DRAPlugin', 'v1beta1.DRAPlugin'],
    });
    await new Promise<void>((resolve, reject) => reg.NotifyRegistrationStatus({ plugin_registered: true, error: '' }, {}, (err) => (err ? reject(err) : resolve())));
    reg.close();
  });

  it('prepare moves the claimed H100 to vfio-pci, writes the metadata file and returns the CDI IDs; unprepare gives it back to nvidia', async () => {
    const t = await setup('server-aspeed-4xh100');
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: 'gpu-0000-18-00-0' }]));
    const res = await t.prepare([ref('vm-gpu', 'uid-1')]);
    expect(res.claims['uid-1']).toEqual({
      error: '',
      devices: [{ request_names: ['gpu'], pool_name: NODE, device_name: 'gpu-0000-18-00-0', cdi_device_ids: ['handoff.dev/gpu=gpu-0000-18-00-0', 'handoff.dev/claim=uid-1-gpu'] }],
    });
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('vfio-pci');
    expect(await driverOf(t.kernel, '0000:3b:00.0')).toBe('nvidia'); // not claimed: untouched
    // The GPU CDI device the answer names exists, with the group's node (H100 0000:18:00.0 is group 31).
    const gpuSpec = JSON.parse(await readFile(join(t.dir, 'cdi', 'handoff.dev-gpu.json'), 'utf8'));
    expect(gpuSpec.kind).toBe('handoff.dev/gpu');
    expect(gpuSpec.devices.map((d: { name: string }) => d.name)).toEqual(['gpu-0000-18-00-0']);
    expect(JSON.stringify(gpuSpec.devices[0].containerEdits)).toContain('/dev/vfio/31');
    const meta = JSON.parse(await readFile(join(t.dir, 'plugins', 'metadata', 'uid-1', 'gpu', 'gpu.handoff.dev-metadata.json'), 'utf8'));
    expect(meta.apiVersion).toBe('metadata.resource.k8s.io/v1alpha1');
    expect(meta.kind).toBe('DeviceMetadata');
    expect(meta.metadata).toEqual({ name: 'vm-gpu', namespace: 'vms', uid: 'uid-1', generation: 1 });
    expect(meta.requests[0].name).toBe('gpu');
    expect(meta.requests[0].devices[0]).toMatchObject({ driver: 'gpu.handoff.dev', pool: NODE, name: 'gpu-0000-18-00-0' });
    expect(meta.requests[0].devices[0].attributes['resource.kubernetes.io/pciBusID']).toEqual({ string: '0000:18:00.0' });
    const spec = JSON.parse(await readFile(join(t.dir, 'cdi', 'handoff.dev-claim_uid-1.json'), 'utf8'));
    expect(spec.kind).toBe('handoff.dev/claim');
    expect(cdiSpecProblems(spec)).toEqual([]); // the CDI v1.1.0 JSON schema + SPEC.md name rules
    expect(cdiSpecProblems(JSON.parse(await readFile(join(t.dir, 'cdi', 'handoff.dev-gpu.json'), 'utf8')))).toEqual([]);
    const hostPath = join(t.dir, 'plugins', 'metadata', 'uid-1', 'gpu', 'gpu.handoff.dev-metadata.json');
    expect(spec.devices).toEqual([
      {
        name: 'uid-1-gpu',
        containerEdits: {
          mounts: [
            // KubeVirt v1.8.0's reader, and the Kubernetes docs' device metadata protocol.
            { hostPath, containerPath: '/var/run/dra-device-attributes/vm-gpu/gpu/gpu.handoff.dev-metadata.json', options: ['ro', 'nosuid', 'nodev', 'bind'] },
            { hostPath, containerPath: '/var/run/kubernetes.io/dra-device-attributes/resourceclaims/vm-gpu/gpu/gpu.handoff.dev-metadata.json', options: ['ro', 'nosuid', 'nodev', 'bind'] },
          ],
        },
      },
    ]);

    const un = await t.unprepare([ref('vm-gpu', 'uid-1')]);
    expect(un.claims['uid-1']).toEqual({ error: '' });
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('nvidia');
    expect((await t.kernel.readText('sys/bus/pci/devices/0000:18:00.0/driver_override'))?.trim()).toBe('(null)');
    await expect(stat(join(t.dir, 'cdi', 'handoff.dev-claim_uid-1.json'))).rejects.toThrow();
    await expect(stat(join(t.dir, 'cdi', 'handoff.dev-gpu.json'))).rejects.toThrow(); // no GPU on vfio-pci left
    await expect(stat(join(t.dir, 'plugins', 'metadata', 'uid-1'))).rejects.toThrow();
    // Unprepare again (kubelet retries after a lost answer): still fine, nothing written.
    t.kernel.clearWriteLog();
    expect((await t.unprepare([ref('vm-gpu', 'uid-1')])).claims['uid-1']).toEqual({ error: '' });
    expect(t.kernel.writeLog).toEqual([]);
  });

  it('the v1beta1 service answers the same as v1', async () => {
    const t = await setup('server-aspeed-4xh100');
    t.claims.put(claim('vm-gpu', 'uid-b', [{ device: 'gpu-0000-3b-00-0' }]));
    const res = await t.prepare([ref('vm-gpu', 'uid-b')], t.v1beta1);
    expect(res.claims['uid-b']?.devices.map((d) => d.device_name)).toEqual(['gpu-0000-3b-00-0']);
    expect(await driverOf(t.kernel, '0000:3b:00.0')).toBe('vfio-pci');
    expect((await t.unprepare([ref('vm-gpu', 'uid-b')], t.v1beta1)).claims['uid-b']?.error).toBe('');
    expect(await driverOf(t.kernel, '0000:3b:00.0')).toBe('nvidia');
  });

  it('a repeated prepare answers from the checkpoint and writes nothing to the host', async () => {
    const t = await setup('server-aspeed-4xh100');
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: 'gpu-0000-18-00-0' }]));
    const first = await t.prepare([ref('vm-gpu', 'uid-1')]);
    t.kernel.clearWriteLog();
    const again = await t.prepare([ref('vm-gpu', 'uid-1')]);
    expect(again).toEqual(first);
    expect(t.kernel.writeLog).toEqual([]);
  });

  it('a repeated prepare looks at the host: a GPU given back by hand meanwhile is prepared again, not reported prepared', async () => {
    const t = await setup('server-aspeed-4xh100');
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: 'gpu-0000-18-00-0' }]));
    const first = await t.prepare([ref('vm-gpu', 'uid-1')]);
    // An admin runs `vfio-handoff release` on the node while the claim is prepared (same state store).
    const admin = new HandoffEngine({ host: t.kernel, store: t.store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: 500 });
    await admin.release({ all: false, selectors: [{ kind: 'address', address: parsePciAddress('0000:18:00.0') }] });
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('nvidia');
    const again = await t.prepare([ref('vm-gpu', 'uid-1')]);
    expect(again).toEqual(first);
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('vfio-pci');
    const gpuSpec = JSON.parse(await readFile(join(t.dir, 'cdi', 'handoff.dev-gpu.json'), 'utf8'));
    expect(gpuSpec.devices.map((d: { name: string }) => d.name)).toEqual(['gpu-0000-18-00-0']);
    // And unprepare still gives it back: the first prepare moved it.
    expect((await t.unprepare([ref('vm-gpu', 'uid-1')])).claims['uid-1']).toEqual({ error: '' });
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('nvidia');
  });

  it('an agent restart between prepare and unprepare loses nothing (claims checkpointed in the state dir)', async () => {
    const t = await setup('server-aspeed-4xh100');
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: 'gpu-0000-9b-00-0' }]));
    const first = await t.prepare([ref('vm-gpu', 'uid-1')]);
    await t.stop();
    // A new process: new driver, new server, same state dir and host; the claim is gone from the API server.
    const t2 = await setup('server-aspeed-4xh100', undefined, { dir: t.dir, kernel: t.kernel, store: t.store });
    expect(await t2.prepare([ref('vm-gpu', 'uid-1')])).toEqual(first);
    expect((await t2.unprepare([ref('vm-gpu', 'uid-1')])).claims['uid-1']).toEqual({ error: '' });
    expect(await driverOf(t.kernel, '0000:9b:00.0')).toBe('nvidia');
  });

  it('one bad claim fails alone: the others of the same call are prepared', async () => {
    const t = await setup('server-aspeed-4xh100');
    t.claims.put(claim('good', 'uid-g', [{ device: 'gpu-0000-bb-00-0' }]));
    t.claims.put(claim('elsewhere', 'uid-e', [{ device: 'gpu-0000-18-00-0', pool: 'node-b' }]));
    const res = await t.prepare([ref('elsewhere', 'uid-e'), ref('good', 'uid-g'), ref('missing', 'uid-m')]);
    expect(res.claims['uid-g']?.error).toBe('');
    expect(res.claims['uid-e']?.error).toMatch(/not in this node's pool node-a/);
    expect(res.claims['uid-m']?.error).toMatch(/not found/);
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('nvidia');
    expect(t.errors).toEqual(['prepare elsewhere INVALID_ARGUMENT', 'prepare missing NOT_FOUND']);
  });

  it('a claim whose UID is not the stored claim\u2019s (deleted and re-created) is refused', async () => {
    const t = await setup('server-aspeed-4xh100');
    t.claims.put(claim('vm-gpu', 'uid-new', [{ device: 'gpu-0000-18-00-0' }]));
    const res = await t.prepare([ref('vm-gpu', 'uid-old')]);
    expect(res.claims['uid-old']?.error).toMatch(/UID/);
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('nvidia');
  });

  it('a claim UID that is a path is refused before anything is written', async () => {
    const t = await setup('server-aspeed-4xh100');
    const res = await t.prepare([ref('vm-gpu', '../../etc')]);
    expect(res.claims['../../etc']?.error).toMatch(/not a UID/);
    expect(t.kernel.writeLog).toEqual([]);
  });

  it('a failed handoff is rolled back and reported on that claim; the GPU stays on nvidia, nothing is checkpointed', async () => {
    const t = await setup('server-aspeed-4xh100');
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: 'gpu-0000-18-00-0' }]));
    t.kernel.injectFault({ path: 'sys/bus/pci/drivers_probe', errno: 'EIO', times: 1 });
    const res = await t.prepare([ref('vm-gpu', 'uid-1')]);
    expect(res.claims['uid-1']?.devices).toEqual([]);
    expect(res.claims['uid-1']?.error).toMatch(/handoff failed: group 31: rolled_back/);
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('nvidia');
    expect((await t.kernel.readText('sys/bus/pci/devices/0000:18:00.0/driver_override'))?.trim()).toBe('(null)');
    expect(JSON.parse(await readFile(join(t.dir, 'state', 'dra-claims.json'), 'utf8').catch(() => '{"claims":{}}')).claims).toEqual({});
    await expect(stat(join(t.dir, 'cdi', 'handoff.dev-claim_uid-1.json'))).rejects.toThrow();
    expect(t.errors).toEqual(['prepare vm-gpu BLOCKED']);
    // kubelet retries; the fault is gone: now it works.
    expect((await t.prepare([ref('vm-gpu', 'uid-1')])).claims['uid-1']?.error).toBe('');
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('vfio-pci');
  });

  it('a claim of two GPUs is all or nothing: when the second fails, the first is given back', async () => {
    const t = await setup('server-aspeed-4xh100');
    t.claims.put(claim('vm-2gpu', 'uid-2', [{ device: 'gpu-0000-18-00-0' }, { device: 'gpu-0000-3b-00-0' }]));
    t.kernel.injectFault({ path: 'sys/bus/pci/devices/0000:3b:00.0/driver_override', errno: 'EIO' });
    const res = await t.prepare([ref('vm-2gpu', 'uid-2')]);
    expect(res.claims['uid-2']?.error).toMatch(/handoff failed/);
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('nvidia');
    expect(await driverOf(t.kernel, '0000:3b:00.0')).toBe('nvidia');
  });

  it('unprepare under a running VM is refused (the engine\u2019s in-use guard) and the claim stays prepared until kubelet retries after the VM is gone', async () => {
    let vmRunning = true;
    // The real engine's guard needs /proc; here the engine answers as it does when a VMM holds /dev/vfio/31.
    const t = await setup('server-aspeed-4xh100', undefined, undefined, (engine) => ({
      prepare: (sel, opts) => engine.prepare(sel, opts),
      discover: () => engine.discover(),
      release: async (sel, opts) => {
        if (vmRunning) throw new InUseError('refusing to release: /dev/vfio/31 is open by pid 777 (qemu-kvm)');
        return engine.release(sel, opts);
      },
    }));
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: 'gpu-0000-18-00-0' }]));
    await t.prepare([ref('vm-gpu', 'uid-1')]);
    const refused = await t.unprepare([ref('vm-gpu', 'uid-1')]);
    expect(refused.claims['uid-1']?.error).toMatch(/\/dev\/vfio\/31 is open by pid 777/);
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('vfio-pci');
    expect(JSON.parse(await readFile(join(t.dir, 'state', 'dra-claims.json'), 'utf8')).claims['uid-1']).toBeDefined();
    vmRunning = false;
    expect((await t.unprepare([ref('vm-gpu', 'uid-1')])).claims['uid-1']).toEqual({ error: '' });
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('nvidia');
  });

  it('keepOnVfio: unprepare leaves the GPU on vfio-pci', async () => {
    const t = await setup('server-aspeed-4xh100', { allowBootGpu: false, keepOnVfio: true });
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: 'gpu-0000-18-00-0' }]));
    await t.prepare([ref('vm-gpu', 'uid-1')]);
    expect((await t.unprepare([ref('vm-gpu', 'uid-1')])).claims['uid-1']).toEqual({ error: '' });
    expect(await driverOf(t.kernel, '0000:18:00.0')).toBe('vfio-pci');
  });
});

describe('DRA plugin and the boot GPU (workstation: RTX 4090 is the boot GPU, efifb on its BAR)', () => {
  const BOOT = 'gpu-0000-01-00-0';
  const config = (allowBootGpu: boolean) => ({ apiVersion: 'gpu.handoff.dev/v1alpha1', kind: 'GpuConfig', allowBootGpu });

  it('refused without allowBootGpu in the claim config; nothing written', async () => {
    const t = await setup('workstation-efifb', { allowBootGpu: true, keepOnVfio: false });
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: BOOT }]));
    const res = await t.prepare([ref('vm-gpu', 'uid-1')]);
    expect(res.claims['uid-1']?.error).toMatch(/boot GPU: the claim's GpuConfig must set allowBootGpu: true/);
    expect(t.kernel.writeLog).toEqual([]);
    expect(await driverOf(t.kernel, '0000:01:00.0')).not.toBe('vfio-pci');
  });

  it('refused with allowBootGpu in the claim but the node policy off', async () => {
    const t = await setup('workstation-efifb', { allowBootGpu: false, keepOnVfio: false });
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: BOOT }], config(true)));
    const res = await t.prepare([ref('vm-gpu', 'uid-1')]);
    expect(res.claims['uid-1']?.error).toMatch(/node's policy does not allow/);
    expect(t.kernel.writeLog).toEqual([]);
  });

  it('a misspelt config field is an error, not a silent "no"', async () => {
    const t = await setup('workstation-efifb', { allowBootGpu: true, keepOnVfio: false });
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: BOOT }], { apiVersion: 'gpu.handoff.dev/v1alpha1', kind: 'GpuConfig', allowBootGPU: true }));
    expect((await t.prepare([ref('vm-gpu', 'uid-1')])).claims['uid-1']?.error).toMatch(/unknown field\(s\) allowBootGPU/);
  });

  it('with both: the whole group (GPU + HDMI audio) goes to vfio-pci, efifb released; unprepare restores the host drivers', async () => {
    const t = await setup('workstation-efifb', { allowBootGpu: true, keepOnVfio: false });
    const before = { gpu: await driverOf(t.kernel, '0000:01:00.0'), audio: await driverOf(t.kernel, '0000:01:00.1') };
    t.claims.put(claim('vm-gpu', 'uid-1', [{ device: BOOT }], config(true), 'FromClass'));
    const res = await t.prepare([ref('vm-gpu', 'uid-1')]);
    expect(res.claims['uid-1']?.error).toBe('');
    expect(await driverOf(t.kernel, '0000:01:00.0')).toBe('vfio-pci');
    expect(await driverOf(t.kernel, '0000:01:00.1')).toBe('vfio-pci');
    expect((await t.unprepare([ref('vm-gpu', 'uid-1')])).claims['uid-1']).toEqual({ error: '' });
    expect({ gpu: await driverOf(t.kernel, '0000:01:00.0'), audio: await driverOf(t.kernel, '0000:01:00.1') }).toEqual(before);
  });
});

describe('DRA kubelet plugin: two GPUs in one IOMMU group (src/testing/host-fixtures.ts)', () => {
  const A = 'gpu-0000-01-00-0';
  const B = 'gpu-0000-02-00-0';
  const GROUP_1 = ['0000:01:00.0', '0000:01:00.1', '0000:02:00.0', '0000:02:00.1'];
  async function sharedGroupSetup() {
    const dir = await mkdtemp(join(tmpdir(), 'dra-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return setup('', undefined, { dir, kernel: new SimulatedKernel(twoGpusOneGroup()), store: new MemoryStateStore() });
  }

  it('a claim for the other GPU of a group another claim holds is refused, naming both; nothing is written', async () => {
    const t = await sharedGroupSetup();
    t.claims.put(claim('vm-1', 'uid-1', [{ device: A }]));
    t.claims.put(claim('vm-2', 'uid-2', [{ device: B }]));
    expect((await t.prepare([ref('vm-1', 'uid-1')])).claims['uid-1']?.error).toBe('');
    expect(await Promise.all(GROUP_1.map((a) => driverOf(t.kernel, a)))).toEqual(['vfio-pci', 'vfio-pci', 'vfio-pci', 'vfio-pci']);
    t.kernel.clearWriteLog();
    const second = await t.prepare([ref('vm-2', 'uid-2')]);
    expect(second.claims['uid-2']?.error).toBe(
      `prepare of ResourceClaim vms/vm-2 (uid-2) failed: device ${B} shares IOMMU group 1 with device ${A}, prepared for ResourceClaim vms/vm-1 (uid-1): vfio hands a group to one VM only`,
    );
    expect(t.kernel.writeLog).toEqual([]);
    // Once the first claim is gone the group goes back to its own drivers, and the second claim can have it.
    expect((await t.unprepare([ref('vm-1', 'uid-1')])).claims['uid-1']).toEqual({ error: '' });
    expect(await Promise.all(GROUP_1.map((a) => driverOf(t.kernel, a)))).toEqual(['nvidia', 'snd_hda_intel', 'nvidia', 'snd_hda_intel']);
    expect((await t.prepare([ref('vm-2', 'uid-2')])).claims['uid-2']?.error).toBe('');
  });

  it('one claim for both GPUs of the group is prepared (one VM gets the whole group)', async () => {
    const t = await sharedGroupSetup();
    t.claims.put(claim('vm-both', 'uid-3', [{ request: 'gpu', device: A }, { request: 'gpu', device: B }]));
    expect((await t.prepare([ref('vm-both', 'uid-3')])).claims['uid-3']?.devices.map((d) => d.device_name)).toEqual([A, B]);
  });

  it('a checkpoint with two claims in one group (written before this guard): unprepare of one leaves the group on vfio-pci', async () => {
    const t = await sharedGroupSetup();
    t.claims.put(claim('vm-1', 'uid-1', [{ device: A }]));
    await t.prepare([ref('vm-1', 'uid-1')]);
    const path = join(t.dir, 'state', 'dra-claims.json');
    const cp = JSON.parse(await readFile(path, 'utf8'));
    const first = cp.claims['uid-1'];
    cp.claims['uid-2'] = { ...first, name: 'vm-2', uid: 'uid-2', files: [], devices: [{ ...first.devices[0], device: B, address: '0000:02:00.0', cdiDeviceIds: [`handoff.dev/gpu=${B}`] }] };
    await writeFile(path, JSON.stringify(cp));
    t.kernel.clearWriteLog();
    expect((await t.unprepare([ref('vm-1', 'uid-1')])).claims['uid-1']).toEqual({ error: '' });
    expect(t.kernel.writeLog).toEqual([]);
    expect(await driverOf(t.kernel, '0000:01:00.0')).toBe('vfio-pci');
    expect((await t.unprepare([ref('vm-2', 'uid-2')])).claims['uid-2']).toEqual({ error: '' });
    expect(await Promise.all(GROUP_1.map((a) => driverOf(t.kernel, a)))).toEqual(['nvidia', 'snd_hda_intel', 'nvidia', 'snd_hda_intel']);
  });
});
