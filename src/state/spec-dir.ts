import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import { safeComponent } from '../sysfs/paths.js';
import type { SpecDir } from '../cdi/writer.js';
import { writeFileAtomic } from './atomic-write.js';

/**
 * A directory of files another program on the node reads (the CDI spec directory), over node:fs the way
 * the state directory is written: atomic writes (temp file in the same directory, fsync, rename; the
 * temp file removed when any step fails), names checked to be one plain path component.
 */
export class NodeSpecDir implements SpecDir {
  constructor(private readonly deps: { readonly dir: string }) {}

  get path(): string {
    return this.deps.dir;
  }

  private file(name: string): string {
    return join(this.deps.dir, safeComponent(name, 'spec file name'));
  }

  async list(): Promise<string[]> {
    try {
      return (await readdir(this.deps.dir)).sort();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return [];
      // A file where the directory should be is a misconfigured --cdi-dir, not an internal error.
      if (code === 'ENOTDIR') throw new InvalidArgumentError(`the CDI spec directory ${JSON.stringify(this.deps.dir)} is not a directory (check --cdi-dir)`);
      throw err;
    }
  }

  async read(name: string): Promise<string | undefined> {
    try {
      return await readFile(this.file(name), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      // A directory squatting on the name reads as "not our file": the write that follows reports it.
      if (code === 'EISDIR') return undefined;
      throw err;
    }
  }

  writeAtomic(name: string, text: string): Promise<void> {
    return writeFileAtomic(this.file(name), text);
  }

  async remove(name: string): Promise<void> {
    await rm(this.file(name), { force: true });
  }
}
