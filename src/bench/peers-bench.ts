import { fileURLToPath } from 'node:url';
import type { HostProfile } from '../profiles/profile.js';
import { ANCHOR_MODULE, ANCHOR_VERSION, ensureAnchorPlugin } from './anchor-plugin.js';
import { mountNamespaceUnavailable } from './mount-namespace.js';
import { bench16GpuHost, h100x8Host } from './peer-hosts.js';
import { measurePeerPlugin, type PeerFigures, type PeerPlugin, type PeerPluginOptions } from './peer-plugin.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** `vfio-handoff plugin` as the DaemonSet's device-plugin container runs it (same NODE_OPTIONS). */
const ours: PeerPlugin = {
  name: 'vfio-handoff plugin',
  argv: [process.execPath, CLI, 'plugin', '--host-root', '/', '--device-plugin-dir', '/var/lib/kubelet/device-plugins', '--log-level', 'warn'],
  env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=1' },
};

/**
 * Device plugins side by side, in one run, on the same materialised hosts (the 16-GPU bench host and an
 * 8 × H100 server), each in its own mount namespace and driven by the same kubelet stand-in: ours and
 * NVIDIA's kubevirt-gpu-device-plugin (built from the Go module proxy when it serves it). Prints, per host
 * and plugin, start → registered, Allocate p50/p99 over 10,000 calls, idle RSS/CPU and the time until kubelet
 * sees a GPU Unhealthy after its `/dev/vfio/<group>` goes and after its driver leaves vfio-pci; and the
 * ratios ours/theirs, or why the anchor could not be measured. Needs root (`unshare -m`).
 */
export async function runPeersBench(opts: PeerPluginOptions = {}): Promise<Record<string, number | string>> {
  const unavailable = mountNamespaceUnavailable();
  if (unavailable !== undefined) return { 'peers.skipped': unavailable };
  const anchor = ensureAnchorPlugin();
  const peers: { key: string; plugin: PeerPlugin }[] = [{ key: 'ours', plugin: ours }];
  const out: Record<string, number | string> = {};
  if ('binary' in anchor) peers.push({ key: 'anchor', plugin: { name: `kubevirt-gpu-device-plugin ${ANCHOR_VERSION}`, argv: [anchor.binary] } });
  else out['peers.anchor'] = `${ANCHOR_MODULE}@${ANCHOR_VERSION} not measured: ${anchor.unavailable}`;
  const hosts: [string, () => Promise<HostProfile>][] = [
    ['bench16', bench16GpuHost],
    ['h100x8', h100x8Host],
  ];
  for (const [hostKey, load] of hosts) {
    const host = await load();
    const figures: Record<string, PeerFigures> = {};
    for (const { key, plugin } of peers) {
      figures[key] = await measurePeerPlugin(plugin, host, opts);
      for (const [k, v] of Object.entries(figures[key])) out[`peers.${hostKey}.${key}.${k}`] = v;
    }
    const them = figures.anchor;
    for (const k of ['start_to_registered_ms', 'allocate_p50_ms', 'allocate_p99_ms', 'idle_rss_mib', 'idle_cpu_percent']) {
      const a = figures.ours![k];
      const b = them?.[k];
      out[`peers.${hostKey}.ratio_ours_to_anchor.${k}`] =
        typeof a === 'number' && typeof b === 'number' && b > 0 ? Number((a / b).toFixed(2)) : 'n/a (anchor not measured)';
    }
  }
  return out;
}
