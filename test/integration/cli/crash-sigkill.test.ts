/**
 * Crash recovery with a real crash: the built CLI runs `prepare`/`release` over a materialised host tree
 * (`--host-root`, driven by a driver core in this process: test/support/tree-kernel.ts) with the real state
 * store in `--state-dir`, and SIGKILLs itself right after step k is journaled (VFIO_HANDOFF_CRASH_AFTER_STEP,
 * the documented test hook in src/cli/host.ts). The next CLI run must finish the job. The end states are
 * written here from the host profile (workstation-efifb), never taken from a run's report.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import type { HostProfile } from '../../../src/profiles/profile.js';
import { FileStateStore } from '../../../src/state/file-state-store.js';
import { CLI_PATH, treeCli, type TreeRun } from '../../support/cli.js';
import { TreeKernel } from '../../support/tree-kernel.js';

const GPU = '0000:01:00.0';
const AUDIO = '0000:01:00.1';
const ROOT_PORT = '0000:00:01.0';

/** workstation-efifb as booted: the GPU has no driver (nvidia not loaded), audio on snd_hda_intel. */
const ON_HOST = { [GPU]: undefined, [AUDIO]: 'snd_hda_intel', [ROOT_PORT]: 'pcieport' };
/** After prepare: both endpoints on vfio-pci; the bridge keeps its driver. */
const ON_VFIO = { [GPU]: 'vfio-pci', [AUDIO]: 'vfio-pci', [ROOT_PORT]: 'pcieport' };

/** The uninterrupted prepare of the boot GPU: what crashing "after step k" interrupts. */
const PREPARE_STEPS = [
  'load-module vfio-pci',
  // No VFIO IOMMU backend in the booted tree; the stand-in modprobe loads it.
  'load-module vfio_iommu_type1',
  'unbind-vtconsole vtcon1',
  'unbind-framebuffer efi-framebuffer.0',
  `set-override ${GPU}`,
  `probe ${GPU}`,
  `set-override ${AUDIO}`,
  `unbind-driver ${AUDIO}`,
  `probe ${AUDIO}`,
  'verify-group 1',
];
/**
 * The release that follows it (no preamble): every endpoint back to exactly what it had — the GPU had no
 * driver, so it is only unbound — then the console.
 */
const RELEASE_STEPS = [
  `clear-override ${GPU}`,
  `unbind-driver ${GPU}`,
  `clear-override ${AUDIO}`,
  `unbind-driver ${AUDIO}`,
  `probe ${AUDIO}`,
  'verify-group 1',
  'bind-framebuffer efi-framebuffer.0',
  'bind-vtconsole vtcon1',
];

let profile: HostProfile;
let tk: TreeKernel;
let work: string;
let state: string;

function cli(args: string[], crashAfter?: number): Promise<TreeRun> {
  const env = { VFIO_HANDOFF_TEST_HOOKS: crashAfter ? '1' : '', VFIO_HANDOFF_CRASH_AFTER_STEP: crashAfter ? String(crashAfter) : '' };
  return treeCli(tk, state, [...args, '--json'], { env, timeoutMs: 60_000 });
}

function describeStep(s: { kind: string; target: string }): string {
  return `${s.kind} ${s.target.replace(/^group /, '')}`;
}

/** Drivers and overrides of group 1 and its /dev/vfio node, read from the kernel behind the tree. */
async function groupState(): Promise<{ drivers: Record<string, string | undefined>; overrides: (string | undefined)[]; vfioNode: boolean }> {
  await tk.settle();
  const s = tk.kernel.state();
  const drivers: Record<string, string | undefined> = {};
  for (const a of [GPU, AUDIO, ROOT_PORT]) drivers[a] = s.devices.find((d) => d.address === a)!.driver;
  return {
    drivers,
    overrides: [GPU, AUDIO].map((a) => s.devices.find((d) => d.address === a)!.driverOverride),
    vfioNode: s.vfioGroups.includes(1),
  };
}

async function expectOnVfio(): Promise<void> {
  expect(await groupState()).toEqual({ drivers: ON_VFIO, overrides: ['vfio-pci', 'vfio-pci'], vfioNode: true });
}

async function expectOnHost(): Promise<void> {
  expect(await groupState()).toEqual({ drivers: ON_HOST, overrides: [undefined, undefined], vfioNode: false });
}

async function crash(args: string[], k: number): Promise<void> {
  const r = await cli(args, k);
  expect(r.signal, `${args.join(' ')} crashing after step ${k}: ${r.stderr}`).toBe('SIGKILL');
  // The kill came between steps: the journal it left is what the next run has to finish.
  expect(await new FileStateStore({ dir: state }).readJournal()).toBeDefined();
}

async function expectNoJournal(): Promise<void> {
  expect(await new FileStateStore({ dir: state }).readJournal()).toBeUndefined();
}

beforeAll(async () => {
  if (!existsSync(CLI_PATH)) throw new Error('dist/cli/main.js missing: npm test builds first (npm run build)');
  profile = await loadBuiltinProfile('workstation-efifb');
});

async function fresh(): Promise<void> {
  work = await mkdtemp(join(tmpdir(), 'vh-crash-'));
  state = join(work, 'state');
  tk = await TreeKernel.start(profile, work);
}

/**
 * The only write the kernel may refuse here: the CLI's fallback `bind` of the original driver, sent when its
 * read-back ran ahead of the asynchronous drivers_probe (see tree-kernel.ts); the CLI ignores its error.
 */
const benign = (r: { path: string; error: string }) => /^sys\/bus\/pci\/drivers\/[^/]+\/bind$/.test(r.path) && r.error.endsWith('EBUSY');

afterEach(async () => {
  await tk?.stop();
  const refused = tk?.refused.filter((r) => !benign(r)) ?? [];
  if (refused.length) throw new Error(`the kernel refused writes: ${JSON.stringify(refused)}`);
  await rm(work, { recursive: true, force: true });
});

describe('SIGKILL of the CLI during prepare and release (materialised tree, real state store)', () => {
  it('runs the expected steps when nothing crashes, and the tree follows the kernel', async () => {
    await fresh();
    await expectOnHost();
    const prep = await cli(['prepare', GPU, '--allow-boot-gpu']);
    expect(prep.code, prep.stderr).toBe(0);
    expect(JSON.parse(prep.stdout).plan.map(describeStep)).toEqual(PREPARE_STEPS);
    await expectOnVfio();
    // A fresh read of the tree by another process agrees with the kernel behind it.
    const inspect = await cli(['inspect']);
    expect(JSON.parse(inspect.stdout).gpus.find((g: { address: string }) => g.address === GPU).verdict).toBe('ready');
    const rel = await cli(['release', GPU]);
    expect(rel.code, rel.stderr).toBe(0);
    expect(JSON.parse(rel.stdout).plan.map(describeStep)).toEqual(RELEASE_STEPS);
    await expectOnHost();
    await expectNoJournal();
  });

  for (let k = 1; k <= PREPARE_STEPS.length; k++) {
    it(`prepare killed after step ${k} (${PREPARE_STEPS[k - 1]}): the next prepare leaves the group fully on vfio-pci`, async () => {
      await fresh();
      await crash(['prepare', GPU, '--allow-boot-gpu'], k);
      const next = await cli(['prepare', GPU, '--allow-boot-gpu']);
      expect(next.code, next.stderr).toBe(0);
      await expectOnVfio();
      await expectNoJournal();
    });

    it(`prepare killed after step ${k} (${PREPARE_STEPS[k - 1]}): a release puts the group back on exactly its original drivers`, async () => {
      await fresh();
      await crash(['prepare', GPU, '--allow-boot-gpu'], k);
      const next = await cli(['release', GPU]);
      expect(next.code, next.stderr).toBe(0);
      await expectOnHost();
      await expectNoJournal();
    });
  }

  for (let k = 1; k <= RELEASE_STEPS.length; k++) {
    it(`release killed after step ${k} (${RELEASE_STEPS[k - 1]}): the next release leaves the group on exactly its original drivers`, async () => {
      await fresh();
      const prep = await cli(['prepare', GPU, '--allow-boot-gpu']);
      expect(prep.code, prep.stderr).toBe(0);
      await expectOnVfio();
      await crash(['release', GPU], k);
      const next = await cli(['release', GPU]);
      expect(next.code, next.stderr).toBe(0);
      await expectOnHost();
      await expectNoJournal();
    });
  }
});
