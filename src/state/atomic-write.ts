import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** Mode of a new file (before umask). Default 0o644. */
  readonly mode?: number;
  /** Mode of directories created on the way (before umask). Default 0o755. */
  readonly dirMode?: number;
}

/**
 * Writes `data` to `path` so a reader (or a crash) sees the old file or the new one, never a torn one:
 * a temp file in the same directory (rename is atomic only within one filesystem), fsync, then rename
 * over the target. On any failure the temp file is removed and the error rethrown; the target is
 * untouched. Lives in src/state, not src/core, because it is file I/O (src/core has none).
 */
export async function writeFileAtomic(path: string, data: string, opts: AtomicWriteOptions = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: opts.dirMode ?? 0o755 });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  try {
    const fh = await open(tmp, 'w', opts.mode ?? 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
