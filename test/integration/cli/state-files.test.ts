import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, realpath, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { cli } from '../../support/cli.js';

const record = { group: 31, gpus: ['0000:18:00.0'], originalDrivers: { '0000:18:00.0': 'nvidia' }, framebuffers: [], vtconsoles: [] };
const journal = (groups: unknown[]) => ({ version: 1, id: 'prepare-1-1', operation: 'prepare', pid: 1, startedAt: 1, preamble: { steps: [], completed: 0 }, groups });
const group = (steps: unknown[], status = 'running', completed = 0) => ({ group: 31, record, steps, completed, status });

describe('state files of the wrong shape are refused cleanly (exit 7, nothing written)', () => {
  let dir: string;
  let root: string;
  let override: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-state-'));
    root = join(dir, 'root');
    await materialiseProfile(await loadBuiltinProfile('server-aspeed-4xh100'), root);
    await mkdir(join(root, 'sys/bus/pci/drivers/vfio-pci'), { recursive: true });
    // modprobe vfio-pci pulls vfio_iommu_type1 in (vfio's softdep), so no load-module step is planned:
    // a test must never run modprobe on the machine it runs on.
    await mkdir(join(root, 'sys/module/vfio_iommu_type1'), { recursive: true });
    override = join(await realpath(join(root, 'sys/bus/pci/devices/0000:18:00.0')), 'driver_override');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['journal.json = null', { 'journal.json': null }],
    ['a null journal group', { 'journal.json': { version: 1, groups: [null] } }],
    ['records.json groups is a string', { 'records.json': { groups: 'x' } }],
    ['a journal group without steps', { 'journal.json': journal([{ group: 31, record, completed: 0, status: 'running' }]) }],
    ['a journal step whose address is ../../../../etc', { 'journal.json': journal([group([{ kind: 'clear-override', address: '../../../../etc' }])]) }],
    ['a journal framebuffer device ..', { 'journal.json': journal([group([{ kind: 'bind-framebuffer', device: '..', driver: 'efifb' }])]) }],
    ['completed beyond the steps', { 'journal.json': journal([group([{ kind: 'clear-override', address: '0000:18:00.0' }], 'running', 5)]) }],
  ])('%s', async (_name, files) => {
    const state = await mkdtemp(join(dir, 'state-'));
    for (const [name, value] of Object.entries(files)) await writeFile(join(state, name), JSON.stringify(value));
    const before = await readFile(override, 'utf8');
    for (const args of [['prepare', '0000:18:00.0'], ['release', '--all']]) {
      const r = await cli([...args, '--host-root', root, '--state-dir', state]);
      expect(r.code, r.stderr).toBe(7);
      expect(r.stderr).toMatch(/is not a valid (journal|records file) \(.*\); move it aside after checking the host by hand/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    expect(await readFile(override, 'utf8')).toBe(before);
    for (const [name, value] of Object.entries(files)) expect(JSON.parse(await readFile(join(state, name), 'utf8'))).toEqual(value);
  });

  it('a recovery that fails keeps journal.json and exits non-zero', async () => {
    const state = await mkdtemp(join(dir, 'state-'));
    // A prepare that died after setting the override; resuming hangs on the unbind, and rolling back needs the same device.
    const unbind = join(root, 'sys/bus/pci/drivers/nvidia/unbind');
    await unlink(unbind);
    execFileSync('mkfifo', [unbind]);
    await writeFile(override, 'vfio-pci\n');
    const j = journal([
      group([
        { kind: 'set-override', address: '0000:18:00.0', driver: 'vfio-pci' },
        { kind: 'unbind-driver', address: '0000:18:00.0', driver: 'nvidia' },
        { kind: 'probe', address: '0000:18:00.0', expect: 'vfio-pci' },
      ], 'running', 1),
    ]);
    await writeFile(join(state, 'journal.json'), JSON.stringify(j));
    const r = await cli(['prepare', '0000:3b:00.0', '--host-root', root, '--state-dir', state, '--write-timeout', '1']);
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/recovering the unfinished handoff failed, so nothing else was done/);
    expect(existsSync(join(state, 'journal.json'))).toBe(true);
    await unlink(unbind);
    await writeFile(unbind, '');
  });
});
