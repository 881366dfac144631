import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeAgent } from '../agent/node-agent.js';
import { realClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { startDevicePlugins } from '../deviceplugin/manager.js';
import { HandoffEngine } from '../handoff/engine.js';
import { discoverHost } from '../host/discover.js';
import { ClientNodeKubeApi } from '../kube/kube-api.js';
import { noopHandoffRecorder, noopPluginRecorder, noopReconcileRecorder } from '../metrics/recorders.js';
import { API_VERSION, GPU_PASSTHROUGH, type GpuPassthrough } from '../api/v1alpha1/index.js';
import { type KubeVirtCr } from '../api/kubevirt.js';
import { startOperator } from '../operator/run-operator.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../state/journal.js';
import { FakeApiServer } from '../testing/fake-apiserver/index.js';
import { FakeKubelet } from '../testing/fake-kubelet.js';

type Out = (s: string) => void;

async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`demo: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Demo stage: the device plugin on a prepared simulated server registers with an in-process kubelet
 * emulator, and we print the Allocate answer KubeVirt's virt-launcher would receive.
 */
export async function demoDevicePlugin(out: Out): Promise<void> {
  out('\n━━ Device plugin: the server\u2019s H100s on vfio-pci, registered with an in-process kubelet emulator\n');
  const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100'));
  const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger });
  await engine.prepare({ all: false, selectors: [{ kind: 'id', vendorId: '10de', deviceId: '2331' }] }, { allowBootGpu: false });
  const dir = await mkdtemp(join(tmpdir(), 'vfio-handoff-demo-'));
  const kubelet = await FakeKubelet.start(dir);
  const plugins = await startDevicePlugins({
    reader: kernel,
    scan: () => discoverHost(kernel),
    pluginDir: dir,
    resourceConfig: { overrides: [{ vendorDevice: '10de:2331', resourceName: 'nvidia.com/GH100_H100_PCIE' }] },
    clock: realClock,
    logger: silentLogger,
    recorder: noopPluginRecorder,
    rescanIntervalMs: 200,
  });
  try {
    const resource = 'nvidia.com/GH100_H100_PCIE';
    await kubelet.waitFor(() => kubelet.healthy(resource).length === 4, 10_000, 'four healthy devices');
    const reg = kubelet.registerCalls.at(-1)!.request;
    out(`\n  kubelet received Register: resource ${reg.resource_name}, endpoint ${reg.endpoint}, version ${reg.version}\n`);
    out(`  ListAndWatch: ${kubelet.healthy(resource).join(', ')} — Healthy\n`);
    const res = await kubelet.allocate(resource, [['0000:9b:00.0', '0000:18:00.0']]);
    const c = res.container_responses[0]!;
    out(`\n  Allocate([0000:9b:00.0, 0000:18:00.0]) → what virt-launcher receives:\n`);
    for (const [k, v] of Object.entries(c.envs)) out(`    env ${k}=${v}\n`);
    for (const d of c.devices) out(`    device ${d.host_path} (${d.permissions})\n`);
    out('\n  A GPU that leaves vfio-pci turns Unhealthy at once:\n');
    kernel.setDriverBinding('0000:3b:00.0', 'nvidia');
    await plugins.rescan();
    await kubelet.waitFor(() => kubelet.unhealthy(resource).includes('0000:3b:00.0'), 5_000, 'unhealthy');
    out(`    unhealthy: ${kubelet.unhealthy(resource).join(', ')}; healthy: ${kubelet.healthy(resource).join(', ')}\n`);
  } finally {
    await plugins.stop();
    await kubelet.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Demo stage: a GpuPassthrough policy reconciled by the operator against an in-process fake API server,
 * with the node agent driving a simulated workstation; shows the policy going Ready, the KubeVirt
 * registration, and the release when the policy is deleted.
 */
export async function demoOperator(out: Out): Promise<void> {
  out('\n━━ Operator: a GpuPassthrough policy on a simulated node (in-process fake Kubernetes API server)\n');
  const server = await FakeApiServer.start();
  const ac = new AbortController();
  try {
    server.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'ws-1', labels: { 'handoff.dev/gpu-pool': 'vm' } } });
    server.seed('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'kubevirts.kubevirt.io' },
      spec: { group: 'kubevirt.io', names: { plural: 'kubevirts', kind: 'KubeVirt' }, scope: 'Namespaced', versions: [{ name: 'v1', served: true, storage: true }] },
    });
    server.seed('kubevirt.io', 'v1', 'kubevirts', { apiVersion: 'kubevirt.io/v1', kind: 'KubeVirt', metadata: { name: 'kubevirt', namespace: 'kubevirt' }, spec: { configuration: {} } });
    const kubeConfig = server.kubeConfig();
    const kube = new ClientNodeKubeApi({ kubeConfig });
    const kernel = new SimulatedKernel(await loadBuiltinProfile('workstation-efifb'));
    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, recorder: noopHandoffRecorder });
    const agent = new NodeAgent({ nodeName: 'ws-1', engine, kube, podResources: { list: async () => [] }, clock: realClock, logger: silentLogger });
    await agent.ensureObject();
    const agentLoop = (async () => {
      while (!ac.signal.aborted) {
        await agent.trigger().catch(() => undefined);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const operator = startOperator({
      kubeConfig,
      api: kube,
      clock: realClock,
      logger: silentLogger,
      recorder: noopReconcileRecorder,
      leaderElect: false,
      leaseNamespace: 'vfio-handoff',
      identity: 'demo',
      resyncMs: 1_000,
      signal: ac.signal,
    });
    const policy: GpuPassthrough = {
      apiVersion: API_VERSION,
      kind: GPU_PASSTHROUGH.kind,
      metadata: { name: 'vm-gpus' },
      spec: {
        nodeSelector: { matchLabels: { 'handoff.dev/gpu-pool': 'vm' } },
        gpus: { vendorDevices: ['10de:2684'] },
        resourceName: 'example.com/rtx4090',
        allowBootGpu: true,
      },
    };
    out(`\n  $ kubectl apply -f - <<< '${JSON.stringify(policy.spec)}'\n`);
    await kube.create({ ...GPU_PASSTHROUGH, namespaced: false }, policy as never);
    const ready = await until('policy Ready', () => {
      const p = server.object('handoff.dev', 'v1alpha1', 'gpupassthroughs', 'vm-gpus') as unknown as GpuPassthrough | undefined;
      return p?.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
    });
    const s = ready.status!;
    out(`\n  $ kubectl get gpupassthrough vm-gpus\n    NAME      READY  NODES  GPUS READY  FAILED\n    vm-gpus   True   ${s.nodesReady}/${s.nodesMatched}    ${s.gpusReady}           ${s.gpusFailed}\n`);
    const ngp = server.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', 'ws-1') as unknown as { status: { gpus: { address: string; phase: string; resourceName?: string; iommuGroup?: number }[]; node: object } };
    out(`\n  $ kubectl get nodegpupassthrough ws-1 -o yaml   (status, written by the agent)\n`);
    for (const g of ngp.status.gpus) out(`    gpu ${g.address}: phase ${g.phase}, group ${g.iommuGroup}, resource ${g.resourceName ?? '-'}\n`);
    out(`    node: ${JSON.stringify(ngp.status.node)}\n`);
    const nodeObj = server.object('', 'v1', 'nodes', 'ws-1') as unknown as { metadata: { labels: Record<string, string> } };
    out(`    node label handoff.dev/passthrough-ready=${nodeObj.metadata.labels['handoff.dev/passthrough-ready']}\n`);
    const kv = await until('KubeVirt registration', () => {
      const cr = server.object('kubevirt.io', 'v1', 'kubevirts', 'kubevirt', 'kubevirt') as unknown as KubeVirtCr | undefined;
      return cr?.spec?.configuration?.permittedHostDevices?.pciHostDevices?.length ? cr : undefined;
    });
    out(`\n  KubeVirt CR permittedHostDevices.pciHostDevices: ${JSON.stringify(kv.spec?.configuration?.permittedHostDevices?.pciHostDevices)}\n`);
    out(`\n  $ kubectl delete gpupassthrough vm-gpus   (the finalizer gives the GPU back first)\n`);
    await kube.delete({ ...GPU_PASSTHROUGH, namespaced: false }, 'vm-gpus');
    await until('policy gone', () => server.object('handoff.dev', 'v1alpha1', 'gpupassthroughs', 'vm-gpus') === undefined || undefined);
    const after = (server.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', 'ws-1') as unknown as { status: { gpus: { address: string; phase: string }[] } }).status.gpus;
    out(`    policy deleted; ${after.map((g) => `${g.address} is back in phase ${g.phase}`).join(', ')}; driver now ${(await kernel.readLink('sys/bus/pci/devices/0000:01:00.1/driver'))?.split('/').pop()} on the audio function\n`);
    ac.abort();
    await operator.done;
    await agentLoop;
  } finally {
    ac.abort();
    await server.close();
  }
}
