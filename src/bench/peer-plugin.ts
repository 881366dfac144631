import { mkdir, mkdtemp, readFile, readlink, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Device } from '../deviceplugin/api.js';
import { materialiseProfile } from '../profiles/materialise.js';
import type { HostProfile } from '../profiles/profile.js';
import { FakeKubelet } from '../testing/fake-kubelet.js';
import { spawnInMountNamespace } from './mount-namespace.js';

/**
 * Measures one device-plugin binary on one host, the same way for any binary: the host is materialised as a
 * file tree, the plugin runs in a private mount namespace over it (mount-namespace.ts) and registers with the
 * kubelet stand-in (testing/fake-kubelet.ts) listening in the plugin directory.
 */
export interface PeerPlugin {
  readonly name: string;
  /** Command line run inside the namespace; it sees the tree at `/sys`, `/dev/vfio` and the plugin dir at the kubelet path. */
  readonly argv: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

export interface PeerPluginOptions {
  /** Timed Allocate calls, after 500 warm-up calls (default 10,000). */
  readonly calls?: number;
  /** Settle time after registration before the idle window (default 5 s). */
  readonly settleMs?: number;
  /** Idle window for RSS/CPU (default 10 s). */
  readonly idleMs?: number;
  /** Samples per unhealthy case (default 5). */
  readonly healthSamples?: number;
  /** How long to wait for kubelet to see a change before calling it "never" (default 10 s). */
  readonly healthTimeoutMs?: number;
}

export type PeerFigures = Record<string, number | string>;

const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const round = (v: number, digits = 3): number => Number(v.toFixed(digits));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** utime + stime of a process in clock ticks (USER_HZ = 100 on Linux), and its RSS in MiB. */
async function procTicks(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]);
}
async function procRssMib(pid: number): Promise<number> {
  return Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

/** Replaces a symlink atomically, as the kernel swaps a `driver` link in one step. */
async function relink(path: string, target: string): Promise<void> {
  const tmp = `${path}.relink`;
  await symlink(target, tmp);
  await rename(tmp, path);
}

/** Moves a function between drivers in the tree: its `driver` link and the driver directory's back-link. */
async function setDriver(tree: string, address: string, from: string, to: string): Promise<void> {
  const drivers = join(tree, 'sys/bus/pci/drivers');
  const link = join(tree, 'sys/bus/pci/devices', address, 'driver');
  const current = await readlink(link); // e.g. ../../../../bus/pci/drivers/vfio-pci
  await mkdir(join(drivers, to), { recursive: true });
  const back = await readlink(join(drivers, from, address)); // ../../../../devices/pci…/<bdf>
  await relink(link, `${current.slice(0, current.lastIndexOf('/') + 1)}${to}`);
  await unlink(join(drivers, from, address));
  await symlink(back, join(drivers, to, address));
}

/**
 * Runs `peer` on `host` and returns, with keys prefixed by nothing (the caller prefixes):
 * start_to_registered_ms (spawn → first ListAndWatch after Register), devices, allocate_p50_ms/p99_ms over
 * `calls` sequential Allocate calls from kubelet, idle_rss_mib (mean)/idle_rss_max_mib/idle_cpu_percent,
 * and the time until kubelet sees the first GPU Unhealthy after (a) its `/dev/vfio/<group>` node is removed
 * and (b) its driver link moves from vfio-pci to nvidia (p50/max over samples, or "never within N s").
 */
export async function measurePeerPlugin(peer: PeerPlugin, host: HostProfile, opts: PeerPluginOptions = {}): Promise<PeerFigures> {
  const calls = opts.calls ?? 10_000;
  const samples = opts.healthSamples ?? 5;
  const healthTimeoutMs = opts.healthTimeoutMs ?? 10_000;
  const work = await mkdtemp(join(tmpdir(), 'vh-peer-'));
  const tree = join(work, 'tree');
  const pluginDir = join(work, 'device-plugins');
  const stage = join(work, 'stage');
  await Promise.all([mkdir(pluginDir), mkdir(stage)]);
  await materialiseProfile(host, tree);
  const kubelet = await FakeKubelet.start(pluginDir);
  const out: PeerFigures = {};
  const t0 = performance.now();
  const child = spawnInMountNamespace({ tree, pluginDir, stage }, peer.argv, peer.env);
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  try {
    await kubelet.waitFor(() => exited || kubelet.resourceNames().some((n) => (kubelet.resource(n)?.updates.length ?? 0) > 0), 60_000, `${peer.name} to register`).catch((e: unknown) => {
      throw new Error(`${peer.name}: ${e instanceof Error ? e.message : String(e)}; stderr: ${stderr.trim()}`);
    });
    if (exited) throw new Error(`${peer.name} exited before registering; stderr: ${stderr.trim()}`);
    const resource = kubelet.resourceNames().find((n) => (kubelet.resource(n)?.updates.length ?? 0) > 0)!;
    out.start_to_registered_ms = round(kubelet.resource(resource)!.updates[0]!.at - t0, 1);
    out.resource = resource;
    // Other resources (e.g. a peer advertising the audio functions) may register a moment later.
    await sleep(1000);
    const resources = kubelet.resourceNames();
    const total = resources.reduce((n, r) => n + (kubelet.resource(r)?.devices.length ?? 0), 0);
    out.devices = `${kubelet.resource(resource)!.devices.length} under ${resource}${resources.length > 1 ? ` (${total} in ${resources.length} resources)` : ''}`;
    const devices = [...kubelet.resource(resource)!.devices].sort((a, b) => (a.ID < b.ID ? -1 : 1));
    const gpu = devices[0]!.ID;

    for (let i = 0; i < 500; i++) await kubelet.allocate(resource, [[gpu]]);
    const lat: number[] = [];
    for (let i = 0; i < calls; i++) {
      const s = performance.now();
      await kubelet.allocate(resource, [[gpu]]);
      lat.push(performance.now() - s);
    }
    lat.sort((a, b) => a - b);
    out.allocate_calls = calls;
    out.allocate_p50_ms = round(percentile(lat, 50));
    out.allocate_p99_ms = round(percentile(lat, 99));

    const pid = child.pid!;
    await sleep(opts.settleMs ?? 5000);
    const idleMs = opts.idleMs ?? 10_000;
    const ticks0 = await procTicks(pid);
    const w0 = performance.now();
    const rss: number[] = [];
    while (performance.now() - w0 < idleMs) {
      rss.push(await procRssMib(pid));
      await sleep(500);
    }
    out.idle_rss_mib = round(rss.reduce((a, b) => a + b, 0) / rss.length, 1);
    out.idle_rss_max_mib = round(Math.max(...rss), 1);
    out.idle_cpu_percent = round(((await procTicks(pid)) - ticks0) / (performance.now() - w0) * 1000, 2); // ticks/100 s ÷ s × 100 %

    // Unhealthy detection. The GPU's group keeps its audio function (when it has one) on vfio-pci, so in case (b)
    // /dev/vfio/<group> stays, as on a real host.
    const groupLink = await readlink(join(tree, 'sys/bus/pci/devices', gpu, 'iommu_group'));
    const node = join(tree, 'dev/vfio', groupLink.slice(groupLink.lastIndexOf('/') + 1));
    const health = (): string | undefined => kubelet.resource(resource)?.devices.find((d: Device) => d.ID === gpu)?.health;
    const timeUntil = async (want: string, change: () => Promise<void>): Promise<number | undefined> => {
      const s = performance.now();
      await change();
      try {
        await kubelet.waitFor(() => health() === want, healthTimeoutMs, `${gpu} ${want}`);
      } catch {
        return undefined;
      }
      return performance.now() - s;
    };
    const cases: [string, () => Promise<void>, () => Promise<void>][] = [
      ['unhealthy_after_vfio_node_removed', () => unlink(node), () => writeFile(node, '')],
      ['unhealthy_after_driver_change', () => setDriver(tree, gpu, 'vfio-pci', 'nvidia'), () => setDriver(tree, gpu, 'nvidia', 'vfio-pci')],
    ];
    for (const [key, breakIt, restore] of cases) {
      const seen: number[] = [];
      let missed = 0;
      for (let i = 0; i < samples; i++) {
        // Desynchronise from any poll tick so the samples spread over the interval.
        await sleep(100 + ((i * 337) % 900));
        const ms = await timeUntil('Unhealthy', breakIt);
        if (ms === undefined) missed++;
        else seen.push(ms);
        await restore();
        if (ms === undefined) continue; // never noticed going bad: nothing to wait for
        await kubelet.waitFor(() => health() === 'Healthy', healthTimeoutMs, `${gpu} healthy again`).catch(() => undefined);
      }
      seen.sort((a, b) => a - b);
      out[`${key}_ms`] =
        seen.length === 0
          ? `never within ${healthTimeoutMs / 1000} s (${samples}/${samples})`
          : `p50 ${round(percentile(seen, 50), 0)}, max ${round(seen.at(-1)!, 0)}${missed > 0 ? `; never within ${healthTimeoutMs / 1000} s in ${missed}/${samples}` : ''}`;
    }
    return out;
  } finally {
    if (!exited) {
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
      if (!exited) child.kill('SIGKILL');
    }
    await kubelet.close();
    await rm(work, { recursive: true, force: true });
  }
}
