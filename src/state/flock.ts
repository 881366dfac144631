import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { JournalError } from '../core/errors.js';

/** flock(1)'s exit code when `--nonblock` finds the lock taken (we choose it with `--conflict-exit-code`). */
const CONFLICT = 75;

export interface FlockDeps {
  /** The flock(1) binary (util-linux); default `flock` from PATH. */
  readonly flock?: string;
  /** Written into the lock file for the "held by" message; never used to decide anything. */
  readonly pid?: number;
}

/**
 * Takes an exclusive `flock(2)` on `path` without waiting, and holds it until the returned release
 * function is called or this process dies in any way (SIGKILL included).
 *
 * Why a child: Node has no flock(2). flock(1) takes the lock, then runs `cat` on a pipe whose other
 * end only we hold; when we exit or die the pipe closes, cat sees EOF, flock exits and the kernel drops
 * the lock. A kernel lock on the file's inode holds across PID namespaces (the agent's container and
 * a CLI on the node share the host directory, not their pids) and has no stale state: the file is
 * never deleted (deleting it would let two runs lock two different inodes), and a dead holder's lock
 * is gone with its open file. Rejects with `JournalError` when another process holds it.
 */
export async function acquireFlock(path: string, deps: FlockDeps = {}): Promise<() => Promise<void>> {
  const child = spawn(
    deps.flock ?? 'flock',
    ['--nonblock', '--exclusive', '--conflict-exit-code', String(CONFLICT), path, '-c', 'echo locked && exec cat >/dev/null'],
    { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
  );
  child.stdin.on('error', () => undefined);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const outcome = await new Promise<'locked' | { code: number | null } | { error: NodeJS.ErrnoException }>((resolve) => {
    child.stdout.once('data', () => resolve('locked'));
    child.once('error', (error) => resolve({ error }));
    void exited.then((code) => resolve({ code }));
  });
  if (outcome !== 'locked') {
    if ('error' in outcome) {
      throw new JournalError(
        outcome.error.code === 'ENOENT' ? `cannot lock ${path}: flock(1) from util-linux is not installed` : `cannot lock ${path}: ${outcome.error.message}`,
        { cause: outcome.error },
      );
    }
    if (outcome.code === CONFLICT) {
      const holder = (await readFile(path, 'utf8').catch(() => '')).trim();
      throw new JournalError(`another vfio-handoff run holds ${path}${/^\d+$/.test(holder) ? ` (pid ${holder} in its own PID namespace)` : ''}; try again when it has finished`);
    }
    throw new JournalError(`cannot lock ${path}: flock exited ${outcome.code}${stderr ? `: ${stderr.trim()}` : ''}`);
  }
  // Informational only: the lock itself is the kernel's.
  await writeFile(path, `${deps.pid ?? process.pid}\n`).catch(() => undefined);
  // The lock must not keep a finished CLI alive; the pipe still closes when we go.
  child.unref();
  for (const s of [child.stdout, child.stderr]) (s as unknown as { unref?: () => void }).unref?.();
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    child.stdin.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, 2_000)))]);
    clearTimeout(timer);
  };
}
