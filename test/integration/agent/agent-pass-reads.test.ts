import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realClock, type Clock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { NodeAgent, NODE_OBJECT } from '../../../src/agent/node-agent.js';
import type { DeviceHolder, PodResourcesPort } from '../../../src/agent/pod-resources.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { discoverHost } from '../../../src/host/discover.js';
import { ClientNodeKubeApi } from '../../../src/kube/kube-api.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import type { HostPort } from '../../../src/sysfs/port.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';

/**
 * The host port with a read counter: every readText/readLink/list/exists is counted per path, so a
 * test can tell how often an agent pass walked each sysfs device directory.
 */
class CountingHost implements HostPort {
  readonly reads = new Map<string, number>();
  constructor(private readonly inner: HostPort) {}
  reset(): void {
    this.reads.clear();
  }
  private count(path: string): void {
    this.reads.set(path, (this.reads.get(path) ?? 0) + 1);
  }
  readText(path: string) {
    this.count(path);
    return this.inner.readText(path);
  }
  readLink(path: string) {
    this.count(path);
    return this.inner.readLink(path);
  }
  list(path: string) {
    this.count(path);
    return this.inner.list(path);
  }
  exists(path: string) {
    this.count(path);
    return this.inner.exists(path);
  }
  writeText(path: string, value: string, opts?: Parameters<HostPort['writeText']>[2]) {
    return this.inner.writeText(path, value, opts);
  }
  loadModule(name: string, opts?: Parameters<HostPort['loadModule']>[1]) {
    return this.inner.loadModule(name, opts);
  }
  /** Reads per PCI device directory (`sys/bus/pci/devices/<address>/…`). */
  perDevice(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [path, n] of this.reads) {
      const m = /^sys\/bus\/pci\/devices\/([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])(?:\/|$)/.exec(path);
      if (m) out.set(m[1]!, (out.get(m[1]!) ?? 0) + n);
    }
    return out;
  }
}

class CountingStore extends MemoryStateStore {
  locks = 0;
  recordReads = 0;
  override async lock(): Promise<() => Promise<void>> {
    this.locks++;
    return super.lock();
  }
  override async readRecords() {
    this.recordReads++;
    return super.readRecords();
  }
}

class FreePods implements PodResourcesPort {
  async list(): Promise<DeviceHolder[]> {
    return [];
  }
}

const stillClock: Clock = { now: () => Date.parse('2026-11-25T12:00:00Z'), sleep: () => Promise.resolve() };
const NODE = 'gpu-node-1';
// server-aspeed-4xh100: the ASPEED BMC VGA at 02:00.0 is the boot GPU; four H100s, each in its own group.
const BOOT = '0000:02:00.0';
const [H1, H2, H3, H4] = ['0000:18:00.0', '0000:3b:00.0', '0000:9b:00.0', '0000:bb:00.0'];

describe('one agent pass discovers the host once to plan (read counter on the host port)', () => {
  let server: FakeApiServer;
  beforeEach(async () => {
    server = await FakeApiServer.start();
    server.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
  });
  afterEach(async () => server.close());

  it('walks every device directory once before acting and once after, and takes the state lock once (boot GPU and H100 to vfio, another H100 back to the host)', async () => {
    const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
    const host = new CountingHost(kernel);
    const store = new CountingStore();
    const engine = new HandoffEngine({ host, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 100, writeTimeoutMs: 300 });
    const kube = new ClientNodeKubeApi({ kubeConfig: server.kubeConfig() });
    const agent = new NodeAgent({ nodeName: NODE, engine, kube, podResources: new FreePods(), clock: stillClock, logger: silentLogger });
    const desire = (gpus: { address: string; allowBootGpu?: boolean }[]) =>
      kube.patch(NODE_OBJECT, NODE, { type: 'merge', body: { spec: { gpus: gpus.map((g) => ({ policy: 'p', ...g })) } } });

    await agent.ensureObject();
    await desire([{ address: H1 }, { address: H2 }]);
    await agent.reconcileOnce(); // H1 and H2 are ours on vfio-pci now

    // What one discovery reads, per device directory, on the host as the measured pass finds it.
    host.reset();
    await discoverHost(host);
    const one = host.perDevice();
    const oneTotal = [...host.reads.values()].reduce((a, b) => a + b, 0);

    // The measured pass: the boot GPU (permitted) and H3 to vfio-pci, H2 back to the host, H1 stays, H4 untouched.
    await desire([{ address: BOOT, allowBootGpu: true }, { address: H1 }, { address: H3 }]);
    host.reset();
    store.locks = 0;
    store.recordReads = 0;
    await agent.reconcileOnce();
    const pass = host.perDevice();

    const phases = Object.fromEntries((server.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', NODE) as unknown as { status: { gpus: { address: string; phase: string }[] } }).status.gpus.map((g) => [g.address, g.phase]));
    expect(phases).toEqual({ [BOOT]: 'Ready', [H1]: 'Ready', [H2]: 'Host', [H3]: 'Ready', [H4]: 'Host' });

    // H4's group is never written or verified: every read of its directory is a discovery's.
    const discoveries = pass.get(H4)! / one.get(H4)!;
    const total = [...host.reads.values()].reduce((a, b) => a + b, 0);
    console.log(
      `agent pass on server-aspeed-4xh100: one discover() = ${oneTotal} host reads (${one.get(H4)} of ${H4}/); ` +
        `the pass = ${total} host reads (${pass.get(H4)} of ${H4}/ = ${discoveries} discoveries), ` +
        `${host.reads.get('sys/bus/pci/devices')} listings of sys/bus/pci/devices, ${store.locks} lock(s), ${store.recordReads} records read(s)`,
    );
    for (const [address, n] of one) {
      if ([BOOT, H2, H3].includes(address)) continue; // written and verified this pass: the steps read them too
      expect({ address, reads: pass.get(address) }).toEqual({ address, reads: 2 * n });
    }
    // Once to plan (the engine reuses the agent's view under the lock), once to report the changed host.
    // Before apply(): 5 discoveries (agent, prepare with boot GPU, prepare without, release, agent again), 3 locks.
    expect(discoveries).toBe(2);
    expect(host.reads.get('sys/bus/pci/devices')).toBe(2);
    expect(store.locks).toBe(1);

    // The next pass has nothing to do: one discovery, no lock, no write.
    host.reset();
    store.locks = 0;
    kernel.clearWriteLog();
    await agent.reconcileOnce();
    expect(host.perDevice()).toEqual(one);
    expect(host.reads.get('sys/bus/pci/devices')).toBe(1);
    expect(store.locks).toBe(0);
    expect(kernel.writeLog).toEqual([]);
  });
});
