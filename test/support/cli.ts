import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

/** The built CLI (`npm test` builds first). */
export const CLI_PATH = join(process.cwd(), 'dist/cli/main.js');
const CLI = CLI_PATH;

/** The result of running the built CLI. */
export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** stderr lines that arrived while the process was still running, with their arrival time. */
  live: { line: string; at: number }[];
}

export function cli(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, VFIO_HANDOFF_TEST_HOOKS: '', ...opts.env } });
    let stdout = '';
    let stderr = '';
    const live: Run['live'] = [];
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (child.exitCode === null) for (const line of d.toString().split('\n').filter(Boolean)) live.push({ line, at: Date.now() - t0 });
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - t0, live }));
  });
}


/** A CLI run over a materialised host tree: its exit code, or the signal that ended it. */
export interface TreeRun {
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Starts the built CLI over a materialised host tree (`--host-root root`) with the real state store in
 * `--state-dir stateDir`; `env` is the tree's (its stand-in modprobe) plus any test hooks. `done` gets the result.
 */
export function spawnTreeCli(
  tree: { readonly root: string; env(): NodeJS.ProcessEnv },
  stateDir: string,
  args: readonly string[],
  done: (r: TreeRun) => void,
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): ChildProcess {
  const env = { ...tree.env(), VFIO_HANDOFF_TEST_HOOKS: '', ...opts.env };
  return execFile(process.execPath, [CLI, ...args, '--host-root', tree.root, '--state-dir', stateDir], { env, timeout: opts.timeoutMs ?? 120_000 }, (err, stdout, stderr) => {
    const e = err as (Error & { code?: number; signal?: string }) | null;
    done({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: e?.signal ?? null, stdout, stderr });
  });
}

/** `spawnTreeCli` as a promise. */
export function treeCli(
  tree: { readonly root: string; env(): NodeJS.ProcessEnv },
  stateDir: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<TreeRun> {
  return new Promise((resolve) => spawnTreeCli(tree, stateDir, args, resolve, opts));
}
