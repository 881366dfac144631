/**
 * Every program vfio-handoff executes, and the Debian package that provides it in the runtime image.
 * `test/unit/deploy/dockerfile.test.ts` checks that the Dockerfile's runtime stage installs each
 * package and checks each program is on PATH; a new `spawn`/`execFile` must be listed here.
 */
export const HOST_PROGRAMS = {
  /** NodeHost.loadModule: `modprobe [-d root] vfio-pci`. Not in Debian slim images. */
  modprobe: { package: 'kmod', usedIn: 'src/sysfs/node-host.ts' },
  /** FileStateStore.lock: holds flock(2) on the state lock (Node has no flock). */
  flock: { package: 'util-linux', usedIn: 'src/state/flock.ts' },
  /** flock(1) runs its command through `sh -c`, which execs `cat` to wait on our pipe. */
  sh: { package: 'dash', usedIn: 'src/state/flock.ts' },
  cat: { package: 'coreutils', usedIn: 'src/state/flock.ts' },
  /** WriterProcess: host writes in a child Node (the image's own `node`, via process.execPath). */
  node: { package: 'node (base image)', usedIn: 'src/sysfs/writer-process.ts' },
} as const;

export type HostProgram = keyof typeof HOST_PROGRAMS;
