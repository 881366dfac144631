/**
 * The README's exit-code table, code by code, from the built CLI over a materialised host tree driven by a
 * driver core (test/support/tree-kernel.ts) and the real state store. 2, 3 and 4 are in cli.test.ts; here
 * are 0, 5, 6 and 7, each with the host state the table promises, written from the profile
 * (workstation-efifb: GPU 01:00.0 without a driver, its audio 01:00.1 on snd_hda_intel, group 1).
 * 1 (internal) has no honest trigger from the CLI any more: the last one, a records file the code could not
 * make sense of, is now refused by the state schema with 7 (tested below). That anything not one of our typed
 * errors maps to 1 is tested in src/cli/exit-codes.test.ts; main.ts prints the stack for it.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import type { HostProfile } from '../../../src/profiles/profile.js';
import { FileStateStore } from '../../../src/state/file-state-store.js';
import { eventually } from '../../support/eventually.js';
import { CLI_PATH, spawnTreeCli, treeCli, type TreeRun } from '../../support/cli.js';
import { TreeKernel } from '../../support/tree-kernel.js';

const GPU = '0000:01:00.0';
const AUDIO = '0000:01:00.1';

let profile: HostProfile;
let tk: TreeKernel;
let work: string;
let state: string;

function spawnCli(args: string[], done: (r: TreeRun) => void): ChildProcess {
  return spawnTreeCli(tk, state, args, done);
}

const cli = (args: string[]): Promise<TreeRun> => treeCli(tk, state, args);

async function group1(): Promise<{ gpu: string | undefined; audio: string | undefined; overrides: (string | undefined)[]; vfioNode: boolean }> {
  await tk.settle();
  const s = tk.kernel.state();
  const dev = (a: string) => s.devices.find((d) => d.address === a)!;
  return { gpu: dev(GPU).driver, audio: dev(AUDIO).driver, overrides: [dev(GPU).driverOverride, dev(AUDIO).driverOverride], vfioNode: s.vfioGroups.includes(1) };
}
const ON_HOST = { gpu: undefined, audio: 'snd_hda_intel', overrides: [undefined, undefined], vfioNode: false };
const ON_VFIO = { gpu: 'vfio-pci', audio: 'vfio-pci', overrides: ['vfio-pci', 'vfio-pci'], vfioNode: true };

beforeAll(async () => {
  if (!existsSync(CLI_PATH)) throw new Error('dist/cli/main.js missing: npm test builds first (npm run build)');
  profile = await loadBuiltinProfile('workstation-efifb');
});
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'vh-exit-'));
  state = join(work, 'state');
  tk = await TreeKernel.start(profile, work);
});
afterEach(async () => {
  await tk.stop();
  await rm(work, { recursive: true, force: true });
});

describe('exit codes of the README table (built CLI, materialised tree, real state store)', () => {
  it('0: done — prepare moves the group to vfio-pci, and a second prepare has nothing to do', async () => {
    expect((await cli(['prepare', GPU, '--allow-boot-gpu'])).code).toBe(0);
    expect(await group1()).toEqual(ON_VFIO);
    const again = await cli(['prepare', GPU, '--allow-boot-gpu', '--json']);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).results.map((o: { outcome: string }) => o.outcome)).toEqual(['already']);
  });

  it('5: a host write fails — the group is rolled back to the drivers it had', async () => {
    // The audio driver's unbind attribute cannot be written (EISDIR): the 7th step fails after the GPU is
    // already on vfio-pci, so the rollback has real work to do.
    tk.detach('sys/bus/pci/drivers/snd_hda_intel/unbind');
    const unbind = join(tk.root, 'sys/bus/pci/drivers/snd_hda_intel/unbind');
    await rm(unbind);
    await mkdir(unbind);
    const r = await cli(['prepare', GPU, '--allow-boot-gpu', '--json']);
    expect(r.code, r.stderr).toBe(5);
    const doc = JSON.parse(r.stdout);
    expect(doc.results[0]).toMatchObject({ outcome: 'rolled_back', error: { code: 'HOST_WRITE_FAILED' } });
    expect(await group1()).toEqual(ON_HOST);
    expect(await new FileStateStore({ dir: state }).readJournal()).toBeUndefined();
  });

  it('6: in use — release refuses while a VMM holds /dev/vfio/1 and changes nothing; --force releases', async () => {
    expect((await cli(['prepare', GPU, '--allow-boot-gpu'])).code).toBe(0);
    await mkdir(join(tk.root, 'proc/4711/fd'), { recursive: true });
    await writeFile(join(tk.root, 'proc/4711/comm'), 'qemu-system-x86\n');
    await symlink('/dev/vfio/1', join(tk.root, 'proc/4711/fd/23'));
    const r = await cli(['release', GPU]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('/dev/vfio/1 is open by pid 4711 (qemu-system-x86)');
    expect(await group1()).toEqual(ON_VFIO);
    expect((await cli(['release', GPU, '--force'])).code).toBe(0);
    expect(await group1()).toEqual(ON_HOST);
  });

  it('7: the lock is held by another live run — the second run exits 7 and writes nothing', async () => {
    // drivers_probe becomes a FIFO nobody reads: the first run blocks in step 5 (its write times out only
    // after 10 s), holding the lock, right after it set the GPU's driver_override.
    tk.detach('sys/bus/pci/drivers_probe');
    const probe = join(tk.root, 'sys/bus/pci/drivers_probe');
    await rm(probe);
    await new Promise<void>((resolve, reject) => execFile('mkfifo', [probe], (err) => (err ? reject(err) : resolve())));
    let first: TreeRun | undefined;
    const child = spawnCli(['prepare', GPU, '--allow-boot-gpu'], (r) => (first = r));
    try {
      const override = join(tk.root, `sys/bus/pci/devices/${GPU}/driver_override`);
      await eventually(async () => expect((await readFile(override, 'utf8')).trim()).toBe('vfio-pci'), 30_000);
      expect(first).toBeUndefined();
      const audioOverride = await readFile(join(tk.root, `sys/bus/pci/devices/${AUDIO}/driver_override`), 'utf8');
      const second = await cli(['release', GPU]);
      expect(second.code, second.stderr).toBe(7);
      // The lock is flock(2) on <state>/lock; the holder's pid is the one it wrote there, as its own PID
      // namespace numbers it (a CLI run on the node and the agent's container see different numbers).
      expect(second.stderr).toContain(`another vfio-handoff run holds ${join(state, 'lock')} (pid ${child.pid} in its own PID namespace); try again when it has finished`);
      expect(first, 'the first run must still hold the lock while the second is refused').toBeUndefined();
      expect(await readFile(join(tk.root, `sys/bus/pci/devices/${AUDIO}/driver_override`), 'utf8')).toBe(audioOverride);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('7: an unreadable journal — prepare refuses before touching the host', async () => {
    await mkdir(state, { recursive: true });
    await writeFile(join(state, 'journal.json'), '{"version": 1, "groups": [');
    const r = await cli(['prepare', GPU, '--allow-boot-gpu']);
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/journal\.json is not valid JSON/);
    expect(await group1()).toEqual(ON_HOST);
    expect(tk.kernel.writeLog).toEqual([]);
  });

  it('7: records of the wrong shape (once an internal error, 1) — refused by the state schema, no stack, nothing written', async () => {
    await mkdir(state, { recursive: true });
    await writeFile(join(state, 'records.json'), '{"version": 1, "groups": {"1": "not a list"}}');
    // vfio-pci is not loaded on this host, so prepare plans `modprobe vfio-pci` first: the state files must be
    // checked before that preamble too (writeLog records module loads).
    for (const args of [['release', GPU], ['prepare', GPU, '--allow-boot-gpu']]) {
      const r = await cli(args);
      expect(r.code, r.stderr).toBe(7);
      expect(r.stderr).toMatch(/records\.json is not a valid records file \(\/groups must be array\); move it aside after checking the host by hand/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(await group1()).toEqual(ON_HOST);
    expect(tk.kernel.writeLog).toEqual([]);
  });
});
