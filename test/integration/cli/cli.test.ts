import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';

const run = promisify(execFile);
const CLI = join(process.cwd(), 'dist/cli/main.js');

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, VFIO_HANDOFF_TEST_HOOKS: '' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('vfio-handoff CLI (built)', () => {
  let tree: string;
  let state: string;
  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error('dist/cli/main.js missing: npm test builds first (npm run build)');
    tree = await mkdtemp(join(tmpdir(), 'vh-cli-tree-'));
    state = await mkdtemp(join(tmpdir(), 'vh-cli-state-'));
    await materialiseProfile(await loadBuiltinProfile('foreign-usb-in-group'), tree);
  });
  afterAll(async () => {
    await rm(tree, { recursive: true, force: true });
    await rm(state, { recursive: true, force: true });
  });

  it('inspect --json over a materialised host tree gives the stable document', async () => {
    const r = await cli(['inspect', '--json', '--host-root', tree]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.version).toBe(1);
    const gpu = doc.gpus.find((g: { address: string }) => g.address === '0000:01:00.0');
    expect(gpu).toMatchObject({ verdict: 'blocked', reasons: [{ code: 'FOREIGN_DEVICE' }] });
    for (const g of doc.gpus) expect(Object.keys(g)).toEqual(expect.arrayContaining(['address', 'verdict', 'reasons', 'warnings', 'plan']));
  });

  it.each([
    [['prepare', '../../etc/passwd'], 2],
    [['prepare', '0000:01:00.0', '--all'], 2],
    [['prepare'], 2],
    [['prepare', '0000:7f:00.0'], 3],
    [['prepare', '0000:01:00.1'], 3],
    [['prepare', '0000:01:00.0'], 4],
    [['release', '--bogus-flag'], 2],
  ])('%j exits %i and changes nothing on the host tree', async (args, code) => {
    const before = await readFile(join(tree, 'sys/bus/pci/devices/0000:01:00.1/driver_override'), 'utf8').catch(() => 'absent');
    const r = await cli([...args, '--host-root', tree, '--state-dir', state]);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(/vfio-handoff|error/);
    const after = await readFile(join(tree, 'sys/bus/pci/devices/0000:01:00.1/driver_override'), 'utf8').catch(() => 'absent');
    expect(after).toBe(before);
  });

  it('--json errors carry the error code', async () => {
    const r = await cli(['prepare', '0000:01:00.0', '--json', '--host-root', tree, '--state-dir', state]);
    expect(r.code).toBe(4);
    expect(JSON.parse(r.stdout).error.code).toBe('BLOCKED');
  });

  it('prepare --dry-run on a simulated profile prints the plan without running it', async () => {
    const r = await cli(['prepare', '--all', '--dry-run', '--json', '--profile', 'server-aspeed-4xh100']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.dryRun).toBe(true);
    expect(doc.plan.map((s: { kind: string }) => s.kind)).toContain('set-override');
    expect(doc.skipped.map((s: { address: string }) => s.address)).toEqual(['0000:02:00.0']);
  });

  it('demo runs to the end', async () => {
    const r = await cli(['demo']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('vfio-handoff prepare --all --allow-boot-gpu');
    expect(r.stdout).toMatch(/group 1 \(0000:01:00\.0\): prepared/);
    // The DRA stage: a claim prepared through the kubelet plugin's gRPC and given back.
    expect(r.stdout).toContain('NodePrepareResources → gpu-0000-9b-00-0: CDI handoff.dev/gpu=gpu-0000-9b-00-0');
    expect(r.stdout).toContain('resource.kubernetes.io/pciBusID = 0000:9b:00.0');
    expect(r.stdout).toContain('0000:9b:00.0 is back on nvidia');
  });
});
