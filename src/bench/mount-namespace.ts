import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

/**
 * Runs a device-plugin binary inside a private mount namespace (`unshare -m`) in which a materialised host
 * tree stands in for the real host: `<tree>/sys` over `/sys`, a fresh `/dev` holding only the usual character
 * devices plus `<tree>/dev/vfio` as `/dev/vfio`, and `pluginDir` as `/var/lib/kubelet/device-plugins` (under a
 * tmpfs over `/var/lib`). A plugin that reads the fixed paths of a real node (as NVIDIA's
 * kubevirt-gpu-device-plugin does) then sees only the tree, and its sockets land in `pluginDir`, where the
 * bench's kubelet listens. Mount propagation is private, so nothing leaks to the host; `/proc` stays the real
 * one. Needs root and util-linux `unshare`. `extraBinds` (source → existing target) cover a peer's other
 * fixed paths.
 *
 * The spawned pid is the plugin's own (unshare and the shell both exec), so `/proc/<pid>` measures it.
 */
export interface MountNamespaceLayout {
  /** Materialised host tree (see profiles/materialise.ts): `sys/`, `dev/vfio/`. */
  readonly tree: string;
  /** Becomes `/var/lib/kubelet/device-plugins` inside. */
  readonly pluginDir: string;
  /** An empty directory outside the namespace, used as the mount point while `/dev` is assembled. */
  readonly stage: string;
  readonly extraBinds?: readonly { readonly source: string; readonly target: string }[];
}

const SETUP = `set -eu
tree=$1 plugins=$2 stage=$3; shift 3
mount --bind "$tree/sys" /sys
mount -t tmpfs -o mode=755 tmpfs "$stage"
for f in null zero full random urandom tty; do : > "$stage/$f"; mount --bind "/dev/$f" "$stage/$f"; done
mkdir "$stage/vfio" "$stage/shm" "$stage/pts"
mount --bind "$tree/dev/vfio" "$stage/vfio"
ln -s /proc/self/fd "$stage/fd"
mount --move "$stage" /dev
mount -t tmpfs -o mode=755 tmpfs /var/lib
mkdir -p /var/lib/kubelet/device-plugins
mount --bind "$plugins" /var/lib/kubelet/device-plugins
while [ "$1" = --bind ]; do mount --bind "$2" "$3"; shift 3; done
[ "$1" = -- ] && shift
exec "$@"`;

/** Why the harness cannot run here, or `undefined` when it can. */
export function mountNamespaceUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (unshare -m and mount)';
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'true'], { stdio: 'ignore' });
  if (r.error || r.status !== 0) return `unshare -m does not work here (${r.error?.message ?? `exit ${String(r.status)}`})`;
  return undefined;
}

export function spawnInMountNamespace(layout: MountNamespaceLayout, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const binds = (layout.extraBinds ?? []).flatMap((b) => ['--bind', b.source, b.target]);
  return spawn(
    'unshare',
    ['-m', '--propagation', 'private', 'sh', '-c', SETUP, 'sh', layout.tree, layout.pluginDir, layout.stage, ...binds, '--', ...argv],
    { env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
}
