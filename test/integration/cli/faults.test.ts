import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, realpath, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { cli } from '../../support/cli.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');

async function fifo(root: string, addr: string, attr: string): Promise<string> {
  const path = attr.startsWith('sys/') ? join(root, attr) : join(await realpath(join(root, 'sys/bus/pci/devices', addr)), attr);
  await unlink(path).catch(() => undefined);
  execFileSync('mkfifo', [path]);
  return path;
}

describe('CLI: a host write that never returns', () => {
  let dir: string;
  let root: string;
  let state: string;
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error('dist/cli/main.js missing: npm test builds first (npm run build)');
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-cli-hang-'));
    root = join(dir, 'root');
    state = join(dir, 'state');
    await materialiseProfile(await loadBuiltinProfile('server-aspeed-4xh100'), root);
    await mkdir(join(root, 'sys/bus/pci/drivers/vfio-pci'), { recursive: true });
    // modprobe vfio-pci pulls vfio_iommu_type1 in (vfio's softdep), so no load-module step is planned:
    // a test must never run modprobe on the machine it runs on.
    await mkdir(join(root, 'sys/module/vfio_iommu_type1'), { recursive: true });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prepare on a hung driver_override prints progress while it waits, exits 5 soon after the write timeout naming the write, and journals the hang', async () => {
    await fifo(root, '0000:18:00.0', 'driver_override');
    const r = await cli(['prepare', '0000:18:00.0', '--host-root', root, '--state-dir', state, '--write-timeout', '2']);
    expect(r.code).toBe(5);
    expect(r.ms).toBeLessThan(2_000 + 15_000);
    // The step was announced while the process was still running, before the write gave up.
    expect(r.live.find((l) => l.line.includes('set driver_override of 0000:18:00.0'))).toBeDefined();
    expect(r.stdout).toMatch(/group 31 \(0000:18:00\.0\): rolled_back — a write hung/);
    expect(r.stdout).toContain('sys/bus/pci/devices/0000:18:00.0/driver_override did not return within 2000 ms');
    const journal = JSON.parse(await readFile(join(state, 'journal.json'), 'utf8'));
    expect(journal.groups[0]).toMatchObject({ group: 31, status: 'failed', hung: { target: '0000:18:00.0' } });
  });

  it('a hung unbind whose rollback needs the same device exits 8 and says how the group stands', async () => {
    await fifo(root, '', 'sys/bus/pci/drivers/nvidia/unbind');
    const r = await cli(['prepare', '0000:18:00.0', '--host-root', root, '--state-dir', state, '--write-timeout', '1', '--json']);
    expect(r.code).toBe(8);
    const doc = JSON.parse(r.stdout);
    expect(doc.results[0]).toMatchObject({ outcome: 'rollback_failed', error: { code: 'TIMEOUT' }, rollbackError: { code: 'ROLLBACK_FAILED' } });
    expect(doc.results[0].rollbackError.message).toMatch(/0000:18:00\.0 on nvidia \(driver_override vfio-pci\)/);
    expect(r.stderr).toMatch(/unbind 0000:18:00\.0 from nvidia/);
    // The journal is kept; the next run (a new process) retries the rollback first.
    expect(JSON.parse(await readFile(join(state, 'journal.json'), 'utf8')).groups[0]).toMatchObject({ status: 'failed', hung: { target: '0000:18:00.0' } });
    const again = await cli(['release', '0000:18:00.0', '--host-root', root, '--state-dir', state, '--write-timeout', '1', '--json']);
    expect(JSON.parse(again.stdout).recovered).toMatchObject([{ group: 31, outcome: 'rolled_back' }]);
  });

  it('release on a hung vfio-pci unbind exits within the timeout too, naming the write', async () => {
    await rm(root, { recursive: true, force: true });
    await materialiseProfile(await loadBuiltinProfile('server-aspeed-l40s-vfio'), root);
    await fifo(root, '', 'sys/bus/pci/drivers/vfio-pci/unbind');
    // Release gives back only what vfio-handoff took: the record says this run's prepare moved it off nvidia
    // (without one, a group bound by someone else is left alone and nothing is written).
    await mkdir(state, { recursive: true });
    const record = { group: 31, gpus: ['0000:18:00.0'], originalDrivers: { '0000:18:00.0': 'nvidia' }, originalOverrides: { '0000:18:00.0': null }, framebuffers: [], vtconsoles: [] };
    await writeFile(join(state, 'records.json'), JSON.stringify({ version: 1, groups: [record] }));
    const r = await cli(['release', '0000:18:00.0', '--host-root', root, '--state-dir', state, '--write-timeout', '1']);
    expect([5, 8]).toContain(r.code);
    expect(r.stdout).toContain('writing "0000:18:00.0" to sys/bus/pci/drivers/vfio-pci/unbind did not return within 1000 ms');
    expect(r.ms).toBeLessThan(1_000 + 15_000);
  });
});
