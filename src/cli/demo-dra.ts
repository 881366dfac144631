import * as grpc from '@grpc/grpc-js';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CdiSpecWriter } from '../cdi/writer.js';
import { realClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { unixTarget } from '../deviceplugin/api.js';
import { loadDraApi, type Claim, type DraPluginClient, type NodePrepareResourcesResponse, type NodeUnprepareResourcesResponse } from '../dra/api.js';
import { MemoryClaimCheckpoint } from '../dra/checkpoint.js';
import { MemoryClaimSource } from '../dra/claim-sources.js';
import { DraDriver } from '../dra/driver.js';
import { gpuFactsReader } from '../dra/facts.js';
import { nodeDraFiles } from '../dra/files-node.js';
import { DraPluginServer } from '../dra/grpc-server.js';
import { HandoffEngine } from '../handoff/engine.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { NodeSpecDir } from '../state/spec-dir.js';
import { MemoryStateStore } from '../state/journal.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';

type Out = (s: string) => void;

/** The demo's DRA stage: kubelet's NodePrepareResources/NodeUnprepareResources over gRPC for one claim of one H100. */
export async function demoDra(out: Out): Promise<void> {
  out('\n━━ DRA: kubelet prepares a ResourceClaim for one H100 through the gpu.handoff.dev kubelet plugin\n');
  const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
  const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger });
  const dir = await mkdtemp(join(tmpdir(), 'vfio-handoff-dra-demo-'));
  const claims = new MemoryClaimSource();
  claims.put({
    apiVersion: 'resource.k8s.io/v1',
    kind: 'ResourceClaim',
    metadata: { name: 'vm-gpu', namespace: 'vms', uid: '6a1c0c9e-1f3b-4c1e-9a57-3f2d4e5b6c7d' },
    status: { allocation: { devices: { results: [{ request: 'gpu', driver: 'gpu.handoff.dev', pool: 'node-a', device: 'gpu-0000-9b-00-0' }] } } },
  });
  const driver = new DraDriver({
    nodeName: 'node-a',
    engine,
    claims,
    checkpoint: new MemoryClaimCheckpoint(),
    policy: { allowBootGpu: false, keepOnVfio: false },
    metadataDir: join(dir, 'metadata'),
    cdiDir: join(dir, 'cdi'),
    cdi: new CdiSpecWriter({ dir: new NodeSpecDir({ dir: join(dir, 'cdi') }), logger: silentLogger }),
    files: nodeDraFiles,
    facts: gpuFactsReader(kernel),
    clock: realClock,
    logger: silentLogger,
  });
  const api = loadDraApi();
  const server = new DraPluginServer({ api, driver, registrationSocket: join(dir, 'reg.sock'), draSocket: join(dir, 'dra.sock'), logger: silentLogger });
  await server.start();
  const client = new api.DraV1Client(unixTarget(join(dir, 'dra.sock')), grpc.credentials.createInsecure());
  const call = <R>(c: DraPluginClient, m: 'NodePrepareResources' | 'NodeUnprepareResources', cs: Claim[]) =>
    new Promise<R>((resolve, reject) => c[m]({ claims: cs }, { deadline: Date.now() + 30_000 }, (err, r) => (err ? reject(err) : resolve(r as R))));
  try {
    const ref: Claim = { namespace: 'vms', name: 'vm-gpu', uid: '6a1c0c9e-1f3b-4c1e-9a57-3f2d4e5b6c7d' };
    out('\n  ResourceClaim vms/vm-gpu, with the allocation a scheduler would write (here written by the demo): device gpu-0000-9b-00-0 in pool node-a\n');
    const prepared = await call<NodePrepareResourcesResponse>(client, 'NodePrepareResources', [ref]);
    const d = prepared.claims[ref.uid]!.devices[0]!;
    out(`  NodePrepareResources → ${d.device_name}: CDI ${d.cdi_device_ids.join(', ')}\n`);
    out(`  sysfs writes: ${kernel.writeLog.filter((w) => w.kind === 'write').length} (whole group 0000:9b:00.0 → vfio-pci)\n`);
    const meta = JSON.parse(await readFile(join(dir, 'metadata', ref.uid, 'gpu', 'gpu.handoff.dev-metadata.json'), 'utf8'));
    out(`  metadata for virt-launcher: resource.kubernetes.io/pciBusID = ${meta.requests[0].devices[0].attributes['resource.kubernetes.io/pciBusID'].string}\n`);
    const un = await call<NodeUnprepareResourcesResponse>(client, 'NodeUnprepareResources', [ref]);
    const now = (await kernel.readLink('sys/bus/pci/devices/0000:9b:00.0/driver'))?.split('/').pop();
    out(`  NodeUnprepareResources → ${un.claims[ref.uid]!.error || 'ok'}; 0000:9b:00.0 is back on ${now}\n`);
  } finally {
    client.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
