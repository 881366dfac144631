import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, open, readFile, readdir, readlink } from 'node:fs/promises';
import { resolve as resolvePath, sep } from 'node:path';
import { HostReadError, HostWriteError, InvalidArgumentError, TimeoutError, errnoOf } from '../core/errors.js';
import { assertSafeRelativePath } from './paths.js';
import type { HostPort, WriteOptions } from './port.js';
import { WriterProcess } from './writer-process.js';

export interface NodeHostDeps {
  /** Where the host's `/` is mounted: `/` on the node itself, `/host` in the DaemonSet. Default `/`. */
  readonly root?: string;
  /** The `modprobe` binary; default `modprobe` from PATH. */
  readonly modprobe?: string;
  /** Where writes run; default a `WriterProcess` of its own. */
  readonly writer?: WriterProcess;
}

export interface HostIoStats {
  readonly reads: number;
  readonly writes: number;
}

/**
 * The host port over `node:fs/promises`, rooted at a configurable directory. It is the only code that
 * touches the real `/sys`, `/dev` and `/proc` (and a materialised test tree, which has the same layout).
 */
export class NodeHost implements HostPort {
  private readonly root: string;
  private readonly modprobe: string;
  private counters = { reads: 0, writes: 0 };
  private readonly writer: WriterProcess;

  constructor(deps: NodeHostDeps = {}) {
    this.root = resolvePath(deps.root ?? '/');
    this.modprobe = deps.modprobe ?? 'modprobe';
    this.writer = deps.writer ?? new WriterProcess();
  }

  /** Starts the writer child while the run is still reading the host. */
  warmUp(): void {
    this.writer.warm();
  }

  /** Stops the idle writer child at once (tests); otherwise it exits by itself after a few idle seconds. */
  close(): void {
    this.writer.close();
  }

  /** Reads and writes so far; the benchmark reports sysfs reads per GPU from this. */
  stats(): HostIoStats {
    return { ...this.counters };
  }

  /** Absolute path for a host-relative one, refusing anything that could leave the root. */
  private abs(path: string): string {
    assertSafeRelativePath(path);
    const full = this.root === sep ? `${sep}${path}` : `${this.root}${sep}${path}`;
    // Belt and braces: assertSafeRelativePath already refused `..`, so this can only fail on a bug.
    if (!full.startsWith(this.root)) throw new InvalidArgumentError(`host path ${JSON.stringify(path)} escapes the host root`);
    return full;
  }

  async readText(path: string): Promise<string | undefined> {
    const full = this.abs(path);
    this.counters.reads++;
    try {
      // Opened with O_NONBLOCK so that a FIFO or device node planted in the tree cannot block the open (and a
      // libuv thread) for ever; such a file is read through that handle (a FIFO without writer reads as '').
      // A regular file is read again without O_NONBLOCK: on 9p (the QEMU test bed's /usr, some container roots)
      // O_NONBLOCK turns a read into one short round trip, and modules.dep then came back without vfio-pci.
      const handle = await open(full, constants.O_RDONLY | constants.O_NONBLOCK);
      try {
        if (!(await handle.stat()).isFile()) return await handle.readFile({ encoding: 'utf8' });
      } finally {
        await handle.close();
      }
      return await readFile(full, { encoding: 'utf8' });
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === 'ENOENT' || errno === 'ENOTDIR') return undefined;
      throw new HostReadError(path, errno, { cause: err });
    }
  }

  async readLink(path: string): Promise<string | undefined> {
    const full = this.abs(path);
    this.counters.reads++;
    try {
      return await readlink(full);
    } catch (err) {
      const errno = errnoOf(err);
      // EINVAL: the path exists but is not a link.
      if (errno === 'ENOENT' || errno === 'ENOTDIR' || errno === 'EINVAL') return undefined;
      throw new HostReadError(path, errno, { cause: err });
    }
  }

  async list(path: string): Promise<string[]> {
    const full = this.abs(path);
    this.counters.reads++;
    try {
      return (await readdir(full)).sort();
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === 'ENOENT') return [];
      throw new HostReadError(path, errno, { cause: err });
    }
  }

  async exists(path: string): Promise<boolean> {
    const full = this.abs(path);
    this.counters.reads++;
    try {
      await access(full, constants.F_OK); // follows links: a dangling link is absent
      return true;
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === 'ENOENT' || errno === 'ENOTDIR') return false;
      throw new HostReadError(path, errno, { cause: err });
    }
  }

  /**
   * One `write(2)` of the whole value (sysfs takes one store per write), opened without O_CREAT so a
   * missing attribute fails with ENOENT instead of becoming a file. The write runs in a writer child
   * process (see `WriterProcess`): a write stuck in the kernel (an `unbind` waiting on a driver) cannot
   * be cancelled from Node, so on abort the promise rejects with `TimeoutError` and the child is
   * killed and abandoned; this process never waits for it and no libuv thread stays blocked.
   */
  async writeText(path: string, value: string, opts: WriteOptions = {}): Promise<void> {
    const full = this.abs(path);
    this.counters.writes++;
    await this.writer.write(full, path, value, opts.signal);
  }

  /** `modprobe [-d <root>] <name>`; the name is validated so it can never be read as an option. */
  async loadModule(name: string, opts: WriteOptions = {}): Promise<void> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(name)) throw new InvalidArgumentError(`invalid module name ${JSON.stringify(name)}`);
    const args = this.root === sep ? [name] : ['-d', this.root, name];
    this.counters.writes++;
    await new Promise<void>((resolve, reject) => {
      const child = execFile(this.modprobe, args, { signal: opts.signal, timeout: 60_000, killSignal: 'SIGKILL' }, (err, _stdout, stderr) => {
        if (!err) return resolve();
        if (opts.signal?.aborted) return reject(new TimeoutError(`modprobe ${name} was aborted`, { cause: err }));
        // modprobe exits 1 for "not found" and for insmod failures; stderr says which.
        const errno = /not found/i.test(stderr) ? 'ENOENT' : errnoOf(err);
        reject(new HostWriteError(`modprobe:${name}`, name, errno, { cause: Object.assign(err, { stderr }) }));
      });
      // A modprobe stuck in init_module() may outlive SIGKILL for a while: never let it hold our exit.
      opts.signal?.addEventListener('abort', () => {
        child.unref();
        for (const s of [child.stdout, child.stderr]) s?.destroy();
      }, { once: true });
    });
  }
}
