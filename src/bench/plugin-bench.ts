// The benchmark makes a throw-away plugin directory in the OS temp dir (never touches /sys or /dev).
import { mkdtemp, rm } from 'node:fs/promises';
import { fork } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { realClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { loadDevicePluginApi, unixTarget } from '../deviceplugin/api.js';
import type { AllocateRequest, AllocateResponse, DevicePluginClient } from '../deviceplugin/api.js';
import { startDevicePlugins } from '../deviceplugin/manager.js';
import { socketFileName } from '../deviceplugin/resources.js';
import { discoverHost } from '../host/discover.js';
import { noopPluginRecorder } from '../metrics/recorders.js';
import { materialiseProfile } from '../profiles/materialise.js';
import { BenchKubelet } from './plugin-kubelet.js';
import { benchPluginKernel } from './plugin-host.js';

export interface PluginBenchOptions {
  /** Allocate calls per server (default 10,000, after 500 warm-up calls). */
  readonly calls?: number;
  /** Device changes timed through ListAndWatch (default 10). */
  readonly updateSamples?: number;
  /** Idle window of the forked plugin process in ms (default 10,000; 0 skips it). */
  readonly idleMs?: number;
  /** Node flags for the forked plugin process (e.g. `--max-semi-space-size=1`). */
  readonly childExecArgv?: readonly string[];
}

const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const round = (v: number, digits = 3): number => Number(v.toFixed(digits));

function allocateOnce(client: DevicePluginClient, req: AllocateRequest): Promise<AllocateResponse> {
  return new Promise((resolve, reject) => client.Allocate(req, {}, (err, res) => (err ? reject(err) : resolve(res!))));
}

async function timeCalls(client: DevicePluginClient, req: AllocateRequest, calls: number): Promise<number[]> {
  for (let i = 0; i < 500; i++) await allocateOnce(client, req);
  const out: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await allocateOnce(client, req);
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

/** A DevicePlugin server whose Allocate returns a constant at once: the grpc-js + unix-socket floor. */
async function startEmptyServer(socketPath: string): Promise<grpc.Server> {
  const api = loadDevicePluginApi();
  const server = new grpc.Server();
  const canned: AllocateResponse = { container_responses: [{ envs: {}, mounts: [], devices: [], annotations: {}, cdi_devices: [] }] };
  const unimplemented = (_c: unknown, cb: grpc.sendUnaryData<object>): void => cb({ code: grpc.status.UNIMPLEMENTED });
  server.addService(api.devicePluginService, {
    Allocate: (_call: grpc.ServerUnaryCall<AllocateRequest, AllocateResponse>, cb: grpc.sendUnaryData<AllocateResponse>) => cb(null, canned),
    GetDevicePluginOptions: unimplemented,
    GetPreferredAllocation: unimplemented,
    PreStartContainer: unimplemented,
    ListAndWatch: (call: grpc.ServerWritableStream<object, object>) => call.end(),
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(unixTarget(socketPath), grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
  );
  return server;
}

async function idleFootprint(idleMs: number, execArgv: readonly string[], hostRoot: string | undefined): Promise<Record<string, number>> {
  const dir = await mkdtemp(join(tmpdir(), 'vh-pbi-'));
  const kubelet = new BenchKubelet(dir);
  await kubelet.start();
  const childPath = fileURLToPath(new URL('./plugin-child.js', import.meta.url));
  const child = fork(childPath, hostRoot ? [dir, hostRoot] : [dir], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [...execArgv] });
  try {
    const report = await new Promise<Record<string, number>>((resolve, reject) => {
      child.on('message', (m: Record<string, unknown>) => {
        if (m.error) reject(new Error(String(m.error)));
        else if (m.ready) void kubelet.waitForResource().then(() => setTimeout(() => child.send({ measure: idleMs }), 1000), reject);
        else resolve(m as Record<string, number>);
      });
      child.on('exit', (code) => reject(new Error(`plugin child exited with ${code}`)));
    });
    return {
      idle_rss_mib: round(report.rss! / 2 ** 20, 1),
      idle_rss_max_mib: round(report.maxRss! / 2 ** 20, 1),
      idle_cpu_percent: round((100 * report.cpuMs!) / report.elapsedMs!, 2),
      idle_window_s: round(report.elapsedMs! / 1000, 1),
    };
  } finally {
    child.kill();
    await kubelet.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Device-plugin benchmark on the simulated `bench-16gpu` host (16 GPUs on vfio-pci):
 * - Allocate p50/p99 over `calls` sequential calls on the plugin's unix socket, against an empty grpc-js
 *   handler on the same kind of socket in the same run (the ratio is the plugin's own cost);
 * - device change → ListAndWatch update latency at the production rescan interval (500 ms);
 * - idle RSS and CPU of a forked plugin process (needs the built `dist/`).
 */
export async function runPluginBench(opts: PluginBenchOptions = {}): Promise<Record<string, number | string>> {
  const calls = opts.calls ?? 10_000;
  const samples = opts.updateSamples ?? 10;
  const idleMs = opts.idleMs ?? 10_000;
  const dir = await mkdtemp(join(tmpdir(), 'vh-pb-'));
  const api = loadDevicePluginApi();
  const kubelet = new BenchKubelet(dir);
  const kernel = await benchPluginKernel();
  const results: Record<string, number | string> = { host: 'bench-16gpu (simulated, all GPUs on vfio-pci)', calls };
  let empty: grpc.Server | undefined;
  let plugins: Awaited<ReturnType<typeof startDevicePlugins>> | undefined;
  const clients: grpc.Client[] = [];
  try {
    await kubelet.start();
    plugins = await startDevicePlugins({
      reader: kernel,
      scan: () => discoverHost(kernel),
      pluginDir: dir,
      resourceConfig: {},
      clock: realClock,
      logger: silentLogger,
      recorder: noopPluginRecorder,
      rescanIntervalMs: 500,
    });
    const resource = await kubelet.waitForResource();
    const devices = plugins.deviceSets().get(resource) ?? [];
    results.resource = resource;
    results.devices = devices.length;
    const gpu = devices[0]!.id;

    const pluginClient = new api.DevicePluginClient(unixTarget(join(dir, socketFileName(resource, dir))), grpc.credentials.createInsecure());
    const emptyPath = join(dir, 'empty.sock');
    empty = await startEmptyServer(emptyPath);
    const emptyClient = new api.DevicePluginClient(unixTarget(emptyPath), grpc.credentials.createInsecure());
    clients.push(pluginClient, emptyClient);
    const req: AllocateRequest = { container_requests: [{ devices_ids: [gpu] }] };

    const base = await timeCalls(emptyClient, req, calls);
    const ours = await timeCalls(pluginClient, req, calls);
    results.allocate_p50_ms = round(percentile(ours, 50));
    results.allocate_p99_ms = round(percentile(ours, 99));
    results.empty_p50_ms = round(percentile(base, 50));
    results.empty_p99_ms = round(percentile(base, 99));
    results.allocate_ratio_p50 = round(percentile(ours, 50) / percentile(base, 50), 2);
    results.allocate_ratio_p99 = round(percentile(ours, 99) / percentile(base, 99), 2);

    // Device change → ListAndWatch: take a GPU off vfio-pci and back, timing each push.
    const latencies: number[] = [];
    for (let i = 0; i < samples; i++) {
      const goingBad = i % 2 === 0;
      const t0 = performance.now();
      kernel.setDriverBinding(gpu, goingBad ? 'nvidia' : 'vfio-pci');
      const at = await kubelet.nextUpdate(resource, (m) => m.devices.some((d) => d.ID === gpu && d.health === (goingBad ? 'Unhealthy' : 'Healthy')));
      latencies.push(at - t0);
      // Desynchronise from the poll tick so the samples spread over the whole interval.
      await new Promise((r) => setTimeout(r, 50 + ((i * 173) % 500)));
    }
    kernel.setDriverBinding(gpu, 'vfio-pci');
    latencies.sort((a, b) => a - b);
    results.update_samples = samples;
    results.update_p50_ms = round(percentile(latencies, 50), 1);
    results.update_max_ms = round(latencies.at(-1)!, 1);
  } finally {
    for (const c of clients) c.close();
    await plugins?.stop();
    if (empty) await new Promise<void>((r) => empty!.tryShutdown(() => r()));
    await kubelet.stop();
    await rm(dir, { recursive: true, force: true });
  }
  if (idleMs > 0) {
    const argv = opts.childExecArgv ?? [];
    const prefix = (p: string, r: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(r).map(([k, v]) => [`${p}${k}`, v]));
    // As asked: the plugin over the simulated host (the simulator and its YAML/JSON-schema loader are in
    // the process too) ...
    Object.assign(results, prefix('sim_', await idleFootprint(idleMs, argv, undefined)));
    // ... and as on a node: NodeHost over the same host materialised as real files.
    const hostRoot = await mkdtemp(join(tmpdir(), 'vh-pbh-'));
    try {
      await materialiseProfile(kernel, hostRoot);
      Object.assign(results, prefix('node_', await idleFootprint(idleMs, argv, hostRoot)));
    } finally {
      await rm(hostRoot, { recursive: true, force: true });
    }
    results.idle_node_flags = argv.join(' ') || '(none)';
  }
  return results;
}
