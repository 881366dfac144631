import { mkdir, readFile, rm } from 'node:fs/promises';
import { writeFileAtomic } from '../state/resource-names-file.js';

/**
 * The DRA driver's file port: kubelet's plugin directories, the CDI spec directory and the agent's state
 * directory — not the host's sysfs, which only src/sysfs touches.
 */
export interface DraFiles {
  /** File contents, or `undefined` when it does not exist. */
  read(path: string): Promise<string | undefined>;
  /** Temp file in the same directory + fsync + rename: a reader sees the old file or the new one (parents are created). */
  writeAtomic(path: string, text: string): Promise<void>;
  /** Removes a file or a directory tree; a missing one is not an error. */
  remove(path: string): Promise<void>;
  /** Creates a directory and its parents. */
  mkdirs(path: string): Promise<void>;
}

export const nodeDraFiles: DraFiles = {
  async read(path) {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  },
  writeAtomic: writeFileAtomic,
  remove: (path) => rm(path, { recursive: true, force: true }),
  async mkdirs(path) {
    await mkdir(path, { recursive: true });
  },
};


