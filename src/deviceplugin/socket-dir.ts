import { watch } from 'node:fs';
import { lstat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';

/**
 * The socket-directory port: the only file-system access of the device plugin (the kubelet's
 * device-plugins directory, not the host's sysfs, so it lives here rather than behind the host port).
 */
export interface SocketStat {
  readonly ino: number;
  readonly isSocket: boolean;
  readonly ctimeMs: number;
}

export interface DirWatch {
  close(): void;
}

export interface SocketDir {
  /** `undefined` when the path does not exist. */
  stat(path: string): Promise<SocketStat | undefined>;
  /** Removes a file; a missing file is not an error. */
  remove(path: string): Promise<void>;
  /** True when something accepts connections on the unix socket within `timeoutMs`. */
  isLive(path: string, timeoutMs: number): Promise<boolean>;
  /**
   * Calls `onChange` (with the entry name when known) whenever an entry of `dir` is created, removed or
   * renamed. Best effort (inotify can miss events or be unavailable): callers also poll with `stat`.
   */
  watch(dir: string, onChange: (name: string | undefined) => void): DirWatch;
}

export const nodeSocketDir: SocketDir = {
  async stat(path) {
    try {
      const s = await lstat(path);
      return { ino: s.ino, isSocket: s.isSocket(), ctimeMs: s.ctimeMs };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  },
  async remove(path) {
    try {
      await unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  },
  isLive(path, timeoutMs) {
    return new Promise((resolve) => {
      const sock = connect({ path });
      const done = (live: boolean): void => {
        clearTimeout(timer);
        sock.destroy();
        resolve(live);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      sock.once('connect', () => done(true));
      sock.once('error', () => done(false));
    });
  },
  watch(dir, onChange) {
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => onChange(name ?? undefined));
      w.on('error', () => onChange(undefined));
      return { close: () => w.close() };
    } catch {
      // No inotify (or the dir is missing): the periodic stat fallback does the work.
      return { close: () => undefined };
    }
  },
};
