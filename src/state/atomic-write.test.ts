import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from './atomic-write.js';

describe(writeFileAtomic.name, () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atomic-write-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('replaces the file whole and leaves nothing else in the directory', async () => {
    const path = join(dir, 'state.json');
    await writeFileAtomic(path, 'one');
    await writeFileAtomic(path, 'two');
    expect(await readFile(path, 'utf8')).toBe('two');
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('creates missing directories and honours the modes', async () => {
    const path = join(dir, 'a', 'b', 'records.json');
    await writeFileAtomic(path, '{}', { mode: 0o600, dirMode: 0o700 });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'a', 'b'))).mode & 0o777).toBe(0o700);
  });

  it('when the rename fails: rethrows, removes its temp file and leaves the target as it was', async () => {
    // A non-empty directory at the target path: rename(2) of a file over it fails (EISDIR/ENOTEMPTY).
    const path = join(dir, 'names.json');
    await mkdir(path);
    await writeFile(join(path, 'keep'), 'x');
    await expect(writeFileAtomic(path, 'new')).rejects.toMatchObject({ code: expect.stringMatching(/^(EISDIR|ENOTEMPTY|EEXIST)$/) });
    expect(await readdir(dir)).toEqual(['names.json']);
    expect(await readdir(path)).toEqual(['keep']);
  });

  it('when the temp file cannot be created: rethrows and creates nothing', async () => {
    const file = join(dir, 'plain');
    await writeFile(file, 'x');
    await expect(writeFileAtomic(join(file, 'under-a-file.json'), 'new')).rejects.toMatchObject({ code: expect.stringMatching(/^(ENOTDIR|EEXIST)$/) });
    expect(await readdir(dir)).toEqual(['plain']);
  });
});
