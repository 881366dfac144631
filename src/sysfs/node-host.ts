import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, open, readFile, readdir, readlink } from 'node:fs/promises';
import { resolve as resolvePath, sep } from 'node:path';
import { HostReadError, HostWriteError, InvalidArgumentError, TimeoutError, errnoOf } from '../core/errors.js';
import { assertSafeRelativePath } from './paths.js';
import type { HostPort, WriteOptions } from './port.js';

export interface NodeHostDeps {
  /** Where the host's `/` is mounted: `/` on the node itself, `/host` in the DaemonSet. Default `/`. */
  readonly root?: string;
  /** The `modprobe` binary; default `modprobe` from PATH. */
  readonly modprobe?: string;
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

  constructor(deps: NodeHostDeps = {}) {
    this.root = resolvePath(deps.root ?? '/');
    this.modprobe = deps.modprobe ?? 'modprobe';
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
      return await readFile(full, 'utf8');
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
   * missing attribute fails with ENOENT instead of becoming a file. A write stuck in the kernel (an
   * `unbind` waiting on a driver) cannot be cancelled from Node: on abort the promise rejects with
   * `TimeoutError`, but the libuv pool thread stays blocked until the kernel returns.
   */
  async writeText(path: string, value: string, opts: WriteOptions = {}): Promise<void> {
    const full = this.abs(path);
    const signal = opts.signal;
    if (signal?.aborted) throw new TimeoutError(`writing ${JSON.stringify(value)} to ${path} was aborted before it started`, { cause: signal.reason });
    this.counters.writes++;
    const work = (async () => {
      let fh;
      try {
        fh = await open(full, constants.O_WRONLY | constants.O_TRUNC);
        const buf = Buffer.from(value, 'utf8');
        const { bytesWritten } = await fh.write(buf, 0, buf.length, null);
        if (bytesWritten !== buf.length) throw Object.assign(new Error('short write'), { code: 'EIO' });
      } catch (err) {
        throw new HostWriteError(path, value, errnoOf(err), { cause: err });
      } finally {
        await fh?.close().catch(() => undefined);
      }
    })();
    if (!signal) return work;
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(new TimeoutError(`writing ${JSON.stringify(value)} to ${path} did not complete before it was aborted`, { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    // Keep a late failure of the abandoned write from surfacing as an unhandled rejection.
    work.catch(() => undefined);
    try {
      return await Promise.race([work, aborted]);
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
  }

  /** `modprobe [-d <root>] <name>`; the name is validated so it can never be read as an option. */
  async loadModule(name: string, opts: WriteOptions = {}): Promise<void> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(name)) throw new InvalidArgumentError(`invalid module name ${JSON.stringify(name)}`);
    const args = this.root === sep ? [name] : ['-d', this.root, name];
    this.counters.writes++;
    await new Promise<void>((resolve, reject) => {
      execFile(this.modprobe, args, { signal: opts.signal, timeout: 60_000 }, (err, _stdout, stderr) => {
        if (!err) return resolve();
        if (opts.signal?.aborted) return reject(new TimeoutError(`modprobe ${name} was aborted`, { cause: err }));
        // modprobe exits 1 for "not found" and for insmod failures; stderr says which.
        const errno = /not found/i.test(stderr) ? 'ENOENT' : errnoOf(err);
        reject(new HostWriteError(`modprobe:${name}`, name, errno, { cause: Object.assign(err, { stderr }) }));
      });
    });
  }
}
