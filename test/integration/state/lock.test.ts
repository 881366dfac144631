import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, realpath, rm, unlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { cli } from '../../support/cli.js';

const CONTENDER = join(process.cwd(), 'test/support/lock-contender.mjs');
const CLI = join(process.cwd(), 'dist/cli/main.js');

function contender(dir: string): { child: ChildProcessWithoutNullStreams; answer: Promise<string> } {
  const child = spawn(process.execPath, [CONTENDER, dir]);
  const answer = new Promise<string>((resolve) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.on('close', () => resolve(out.trim() || 'exited'));
  });
  return { child, answer };
}

const isRoot = process.getuid?.() === 0;
const canUnshare = isRoot && (() => {
  try {
    execFileSync('unshare', ['-p', '-f', '--mount-proc', 'true']);
    return true;
  } catch {
    return false;
  }
})();
const requireUnshare = process.env.CI === 'true';

describe('the state lock (flock on <state-dir>/lock)', () => {
  let dir: string;
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error('dist/ missing: npm test builds first (npm run build)');
  });
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('eight runs started together over a stale lock (holder SIGKILLed, old pid file left): exactly one holds it, in every trial', async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-lock-'));
    for (let trial = 0; trial < 6; trial++) {
      const state = join(dir, `t${trial}`);
      await mkdir(state);
      // A holder that dies without unlocking, and the pid file an older version would have called stale.
      const dead = contender(state);
      expect(await dead.answer).toBe('got');
      dead.child.kill('SIGKILL');
      await new Promise((r) => dead.child.on('close', r));
      await writeFile(join(state, 'lock'), '999999\n');
      const runs = Array.from({ length: 8 }, () => contender(state));
      const answers = await Promise.all(runs.map((r) => r.answer));
      for (const r of runs) r.child.stdin.end();
      await Promise.all(runs.map((r) => new Promise((res) => (r.child.exitCode !== null ? res(null) : r.child.on('close', res)))));
      expect(answers.filter((a) => a === 'got'), `trial ${trial}: ${answers.join(' | ')}`).toHaveLength(1);
      expect(answers.filter((a) => a.startsWith('held: JOURNAL another vfio-handoff run holds'))).toHaveLength(7);
    }
  }, 180_000);

  it('is released when the holder exits, and refused while it lives', async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-lock-'));
    const a = contender(dir);
    expect(await a.answer).toBe('got');
    expect(await contender(dir).answer).toMatch(/^held: JOURNAL .*\(pid \d+ in its own PID namespace\)/);
    a.child.stdin.end();
    await new Promise((r) => a.child.on('close', r));
    const b = contender(dir);
    expect(await b.answer).toBe('got');
    b.child.stdin.end();
  });

  it.skipIf(!canUnshare && !requireUnshare)(
    `a run in another PID namespace (unshare -p -f --mount-proc) exits 7 and touches nothing while the first is busy${canUnshare ? '' : ' — skipped: needs root and unshare'}`,
    async () => {
      dir = await mkdtemp(join(tmpdir(), 'vh-lock-ns-'));
      const root = join(dir, 'root');
      const state = join(dir, 'state');
      await materialiseProfile(await loadBuiltinProfile('server-aspeed-4xh100'), root);
      await mkdir(join(root, 'sys/bus/pci/drivers/vfio-pci'), { recursive: true });
      // modprobe vfio-pci pulls vfio_iommu_type1 in (vfio's softdep), so no load-module step is planned:
      // a test must never run modprobe on the machine it runs on.
      await mkdir(join(root, 'sys/module/vfio_iommu_type1'), { recursive: true });
      // The first run hangs on its first write for 30 s: busy, holding the lock.
      const attr = join(await realpath(join(root, 'sys/bus/pci/devices/0000:18:00.0')), 'driver_override');
      await unlink(attr);
      execFileSync('mkfifo', [attr]);
      const first = spawn(process.execPath, [CLI, 'prepare', '0000:18:00.0', '--host-root', root, '--state-dir', state, '--write-timeout', '30']);
      let firstErr = '';
      await new Promise<void>((resolve) => first.stderr.on('data', (d: Buffer) => ((firstErr += d.toString()), firstErr.includes('set driver_override') && resolve())));
      const override3b = join(await realpath(join(root, 'sys/bus/pci/devices/0000:3b:00.0')), 'driver_override');
      const before = await readFile(override3b, 'utf8');
      const journalBefore = await readFile(join(state, 'journal.json'), 'utf8');
      const second = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const c = spawn('unshare', ['-p', '-f', '--mount-proc', process.execPath, CLI, 'prepare', '0000:3b:00.0', '--host-root', root, '--state-dir', state]);
        let stderr = '';
        c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        c.on('close', (code) => resolve({ code, stderr }));
      });
      first.kill('SIGKILL');
      expect(second.code).toBe(7);
      expect(second.stderr).toMatch(/another vfio-handoff run holds/);
      expect(await readFile(override3b, 'utf8')).toBe(before);
      expect(await readFile(join(state, 'journal.json'), 'utf8')).toBe(journalBefore);
    },
  );

  it('the CLI refuses with exit 7 while another run holds the lock', async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-lock-cli-'));
    const holder = contender(join(dir, 'state'));
    expect(await holder.answer).toBe('got');
    const root = join(dir, 'root');
    await mkdir(join(root, 'sys/bus/pci/devices'), { recursive: true });
    const r = await cli(['release', '--all', '--host-root', root, '--state-dir', join(dir, 'state')]);
    expect(r.stderr).toMatch(/another vfio-handoff run holds/);
    holder.child.stdin.end();
    expect(r.code).toBe(7);
  });
});
