/**
 * THE host port: every read and write of sysfs, devfs and procfs goes through these interfaces.
 * Paths are relative to the host root and never start with `/` (e.g. `sys/bus/pci/devices/0000:01:00.0/driver`);
 * build them with `src/sysfs/paths.ts`, which refuses unsafe components.
 *
 * Readers and writers are separate so that the unprivileged device plugin can be handed only a reader.
 */
export interface HostReader {
  /** File contents, or `undefined` when the path does not exist. Other failures throw `HostReadError`. */
  readText(path: string): Promise<string | undefined>;
  /** The link target exactly as stored (usually relative), or `undefined` when absent or not a link. */
  readLink(path: string): Promise<string | undefined>;
  /** Entry names of a directory, sorted by plain string order; `[]` when the directory is absent. */
  list(path: string): Promise<string[]>;
  /** True when the path exists (a dangling link counts as absent). */
  exists(path: string): Promise<boolean>;
}

export interface WriteOptions {
  /** Aborts a write that hangs (a driver `unbind` can block forever); the write then rejects. */
  readonly signal?: AbortSignal;
}

export interface HostWriter {
  /** Writes `value` to a sysfs attribute. Rejects with `HostWriteError` carrying the kernel's errno. */
  writeText(path: string, value: string, opts?: WriteOptions): Promise<void>;
  /** Loads a kernel module (e.g. `vfio-pci`) the way `modprobe` would. Rejects with `HostWriteError`. */
  loadModule(name: string, opts?: WriteOptions): Promise<void>;
  /** Optional hint that writes are coming (a run took the lock): start what writing needs, in the background. */
  warmUp?(): void;
}

export type HostPort = HostReader & HostWriter;
