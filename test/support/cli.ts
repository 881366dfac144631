import { spawn } from 'node:child_process';
import { join } from 'node:path';

const CLI = join(process.cwd(), 'dist/cli/main.js');

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

