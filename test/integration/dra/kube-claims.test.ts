import { afterEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { MemoryClaimCheckpoint } from '../../../src/dra/checkpoint.js';
import { KubeClaimSource } from '../../../src/dra/claim-sources.js';
import { DraDriver } from '../../../src/dra/driver.js';
import { gpuFactsReader } from '../../../src/dra/facts.js';
import type { DraFiles } from '../../../src/dra/files-node.js';
import { RESOURCE_CLAIMS } from '../../../src/dra/slice.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { EventRecorder } from '../../../src/kube/events.js';
import { HttpKubeApi } from '../../../src/kube/http-kube-api.js';
import type { KubeObject } from '../../../src/kube/port.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { MemoryStateStore } from '../../../src/state/journal.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { FakeApiServer } from '../../../src/testing/fake-apiserver/index.js';

let server: FakeApiServer | undefined;
let api: HttpKubeApi | undefined;
afterEach(async () => {
  api?.close();
  await server?.close();
});

/** In-memory file port: what the driver writes, by path. */
function memoryFiles(): DraFiles & { files: Map<string, string> } {
  const files = new Map<string, string>();
  return {
    files,
    read: async (p) => files.get(p),
    writeAtomic: async (p, t) => void files.set(p, t),
    remove: async (p) => {
      for (const k of [...files.keys()]) if (k === p || k.startsWith(`${p}/`)) files.delete(k);
    },
    mkdirs: async () => undefined,
  };
}

describe('DRA driver reading claims from the API server (fake, resource.k8s.io/v1) and recording Events on them', () => {
  it('prepares from the claim\u2019s status.allocation; a refusal becomes a Warning Event on the claim', async () => {
    server = await FakeApiServer.start();
    api = new HttpKubeApi({ config: { server: server.url } });
    // As the scheduler leaves it: created by the user, allocation written to status.
    const created = await api.create<KubeObject & { spec?: unknown }>(RESOURCE_CLAIMS, { apiVersion: 'resource.k8s.io/v1', kind: 'ResourceClaim', metadata: { name: 'vm-gpu', namespace: 'vms' }, spec: { devices: { requests: [] } } });
    await api.replaceStatus(RESOURCE_CLAIMS, {
      ...created,
      status: { allocation: { devices: { results: [{ request: 'gpu', driver: 'gpu.handoff.dev', pool: 'node-a', device: 'gpu-0000-02-00-0' }] } } },
    });
    const uid = created.metadata!.uid!;
    const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
    const events = new EventRecorder({ api, clock: realClock, logger: silentLogger }, { component: 'vfio-handoff-dra', host: 'node-a' });
    const pending: Promise<void>[] = [];
    const driver = new DraDriver({
      nodeName: 'node-a',
      engine: new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger }),
      claims: new KubeClaimSource(api),
      checkpoint: new MemoryClaimCheckpoint(),
      policy: { allowBootGpu: false, keepOnVfio: false },
      metadataDir: '/m',
      cdiDir: '/cdi',
      files: memoryFiles(),
      facts: gpuFactsReader(kernel),
      clock: realClock,
      logger: silentLogger,
      onClaimError: (c, _op, reason, message) =>
        void pending.push(events.warning({ apiVersion: 'resource.k8s.io/v1', kind: 'ResourceClaim', name: c.name, namespace: c.namespace, uid: c.uid }, 'PrepareFailed', `${reason}: ${message}`)),
    });
    // The scheduler gave this claim the BMC's boot VGA (a class that does not exclude it): refused.
    const res = await driver.prepare([{ namespace: 'vms', name: 'vm-gpu', uid }]);
    expect(res[uid]?.error).toMatch(/boot GPU/);
    await Promise.all(pending);
    const evs = server.objects('', 'v1', 'events', 'vms') as unknown as { involvedObject: { kind: string; name: string; uid: string }; reason: string; type: string; message: string }[];
    expect(evs.map((e) => [e.involvedObject.kind, e.involvedObject.name, e.involvedObject.uid, e.type, e.reason])).toEqual([['ResourceClaim', 'vm-gpu', uid, 'Warning', 'PrepareFailed']]);
    expect(evs[0]!.message).toMatch(/^BLOCKED: prepare of ResourceClaim vms\/vm-gpu/);

    // Re-allocated to an H100 by the scheduler: prepared.
    const current = await api.get(RESOURCE_CLAIMS, 'vm-gpu', 'vms');
    await api.replaceStatus(RESOURCE_CLAIMS, { ...current, status: { allocation: { devices: { results: [{ request: 'gpu', driver: 'gpu.handoff.dev', pool: 'node-a', device: 'gpu-0000-18-00-0' }] } } } });
    expect((await driver.prepare([{ namespace: 'vms', name: 'vm-gpu', uid }]))[uid]?.error).toBe('');
    // kubelet names a UID the stored claim does not have (deleted and re-created): refused.
    expect((await driver.prepare([{ namespace: 'vms', name: 'vm-gpu', uid: 'another-uid' }]))['another-uid']?.error).toMatch(/UID/);
  });
});
