import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../core/errors.js';
import { NodeSpecDir } from './spec-dir.js';

describe('NodeSpecDir', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-specdir-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists a missing directory as empty and an existing one sorted', async () => {
    expect(await new NodeSpecDir({ dir: join(dir, 'absent') }).list()).toEqual([]);
    await writeFile(join(dir, 'b.json'), '{}');
    await writeFile(join(dir, 'a.json'), '{}');
    expect(await new NodeSpecDir({ dir }).list()).toEqual(['a.json', 'b.json']);
  });

  it('a file where the spec directory should be is an InvalidArgumentError naming --cdi-dir', async () => {
    const file = join(dir, 'not-a-dir');
    await writeFile(file, 'x');
    const err = await new NodeSpecDir({ dir: file }).list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toBe(`the CDI spec directory ${JSON.stringify(file)} is not a directory (check --cdi-dir)`);
  });
});
