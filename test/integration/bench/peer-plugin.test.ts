/**
 * The side-by-side device-plugin harness: a plugin binary run in a private mount namespace over a materialised
 * host tree (so a peer that reads the fixed paths of a real node sees only the tree), driven by the kubelet
 * stand-in. Needs root for `unshare -m`; outside CI without root it is skipped with the reason, under CI=true
 * it runs (and fails if the harness cannot work).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountNamespaceUnavailable, spawnInMountNamespace } from '../../../src/bench/mount-namespace.js';
import { h100x8Host } from '../../../src/bench/peer-hosts.js';
import { measurePeerPlugin } from '../../../src/bench/peer-plugin.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';

const unmet = mountNamespaceUnavailable();
const suite = unmet !== undefined && process.env.CI !== 'true' ? describe.skip : describe;
const CLI = join(import.meta.dirname, '../../../dist/cli/main.js');

suite(`device-plugin peer harness${unmet !== undefined ? ` (skipped: ${unmet})` : ''}`, () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'vh-peer-test-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('shows the plugin only the tree: /sys, /dev/vfio and the kubelet plugin dir, and leaves the host as it was', async () => {
    const tree = join(work, 'tree');
    const plugins = join(work, 'plugins');
    const stage = join(work, 'stage');
    await Promise.all([mkdir(plugins), mkdir(stage)]);
    await materialiseProfile(await h100x8Host(), tree);
    const hostHadVfio = existsSync('/dev/vfio');
    const k = '/var/lib/kubelet/device-plugins';
    const child = spawnInMountNamespace({ tree, pluginDir: plugins, stage }, [
      'sh', '-c', `ls /dev/vfio > ${k}/vfio; ls /sys/bus/pci/devices > ${k}/pci; test -c /dev/null && test -c /dev/urandom && echo ok > ${k}/devnodes`,
    ]);
    expect(await new Promise<number | null>((r) => child.on('exit', r))).toBe(0);
    const host = await h100x8Host();
    const groups = host.devices.filter((d) => d.driver === 'vfio-pci').map((d) => String(d.iommuGroup));
    expect((await readFile(join(plugins, 'vfio'), 'utf8')).split('\n').filter(Boolean).sort()).toEqual([...groups, 'vfio'].sort());
    expect((await readFile(join(plugins, 'pci'), 'utf8')).split('\n').filter(Boolean).sort()).toEqual(host.devices.map((d) => d.address).sort());
    expect(await readFile(join(plugins, 'devnodes'), 'utf8')).toBe('ok\n');
    // Nothing leaked to the host's mount table.
    expect(existsSync('/dev/vfio')).toBe(hostHadVfio);
    expect(existsSync(`${k}/vfio`)).toBe(false);
  });

  it('measures vfio-handoff plugin on the 8 × H100 host: registers, allocates, and kubelet sees both kinds of failure', async () => {
    const figures = await measurePeerPlugin(
      { name: 'vfio-handoff plugin', argv: [process.execPath, CLI, 'plugin', '--log-level', 'warn'] },
      await h100x8Host(),
      { calls: 200, settleMs: 200, idleMs: 1000, healthSamples: 1 },
    );
    expect(figures.resource).toBe('handoff.dev/10de-2331');
    expect(figures.devices).toBe('8 under handoff.dev/10de-2331');
    expect(figures.allocate_p99_ms).toBeGreaterThan(0);
    expect(figures.idle_rss_mib).toBeGreaterThan(10);
    // Each case must be noticed at all (the figure, not a timing bound, is what the benchmark reports).
    expect(figures.unhealthy_after_vfio_node_removed_ms).toMatch(/^p50 \d+, max \d+$/);
    expect(figures.unhealthy_after_driver_change_ms).toMatch(/^p50 \d+, max \d+$/);
  }, 120_000);

  it('fails with the peer\'s own words when it exits before registering', async () => {
    await expect(
      measurePeerPlugin({ name: 'broken peer', argv: ['sh', '-c', 'echo "cannot open /usr/pci.ids" >&2; exit 3'] }, await h100x8Host(), { calls: 1 }),
    ).rejects.toThrow(/broken peer exited before registering; stderr: cannot open \/usr\/pci.ids/);
  });
});
