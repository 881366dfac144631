import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cdiSpecProblems } from '../../test/support/cdi-schema.js';
import { silentLogger } from '../core/logger.js';
import { discoverHost } from '../host/discover.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { NodeSpecDir } from '../state/spec-dir.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { CDI_SPEC_FILE } from './spec.js';
import { CdiSpecWriter } from './writer.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vh-cdi-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rig(): Promise<{ kernel: SimulatedKernel; writer: CdiSpecWriter; specPath: string }> {
  const kernel = new SimulatedKernel(await loadBuiltinProfile('server-aspeed-l40s-vfio'));
  return { kernel, writer: new CdiSpecWriter({ dir: new NodeSpecDir({ dir: join(dir, 'cdi') }), logger: silentLogger }), specPath: join(dir, 'cdi', CDI_SPEC_FILE) };
}
const names = async (p: string): Promise<string[]> => (JSON.parse(await readFile(p, 'utf8')) as { devices: { name: string }[] }).devices.map((d) => d.name);

describe(CdiSpecWriter.name, () => {
  it('creates the directory and writes a valid spec, world-readable; an unchanged host rewrites nothing', async () => {
    const { kernel, writer, specPath } = await rig();
    const first = await writer.sync(await discoverHost(kernel));
    expect(first).toEqual({ devices: ['gpu-0000-18-00-0', 'gpu-0000-3b-00-0', 'gpu-0000-9b-00-0', 'gpu-0000-bb-00-0'], changed: true, removed: [] });
    expect(cdiSpecProblems(JSON.parse(await readFile(specPath, 'utf8')))).toEqual([]);
    const st = await stat(specPath);
    expect(st.mode & 0o777).toBe(0o644);
    const again = await writer.sync(await discoverHost(kernel));
    expect(again.changed).toBe(false);
    expect((await stat(specPath)).ino).toBe(st.ino); // not rewritten (a rename would give a new inode)
  });

  it('drops a GPU that left vfio-pci and a GPU unplugged, and removes the file when no GPU is left', async () => {
    const { kernel, writer, specPath } = await rig();
    await writer.sync(await discoverHost(kernel));
    kernel.setDriverBinding('0000:3b:00.0', 'nvidia');
    kernel.removeDevice('0000:bb:00.0');
    expect((await writer.sync(await discoverHost(kernel))).changed).toBe(true);
    expect(await names(specPath)).toEqual(['gpu-0000-18-00-0', 'gpu-0000-9b-00-0']);
    for (const a of ['0000:18:00.0', '0000:9b:00.0']) kernel.setDriverBinding(a, 'nvidia');
    expect(await writer.sync(await discoverHost(kernel))).toEqual({ devices: [], changed: true, removed: [] });
    expect(await readdir(join(dir, 'cdi'))).toEqual([]);
  });

  it('removes stale files of ours (old extension, temp files of an interrupted write) and leaves other vendors’ specs alone', async () => {
    const { kernel, writer } = await rig();
    const cdi = join(dir, 'cdi');
    await mkdir(cdi);
    const others = ['nvidia.com-gpu.yaml', '.nvidia.com-gpu.json.7.abc.tmp', 'handoff.dev-gpu.json.bak'];
    for (const f of [...others, 'handoff.dev-gpu.yaml', '.handoff.dev-gpu.json.1.k2j3.tmp']) await writeFile(join(cdi, f), 'x');
    const r = await writer.sync(await discoverHost(kernel));
    expect(r.removed).toEqual(['.handoff.dev-gpu.json.1.k2j3.tmp', 'handoff.dev-gpu.yaml']);
    expect((await readdir(cdi)).sort()).toEqual([...others, CDI_SPEC_FILE].sort());
  });

  it('restores a spec deleted or edited by hand at the next sync', async () => {
    const { kernel, writer, specPath } = await rig();
    const snapshot = await discoverHost(kernel);
    await writer.sync(snapshot);
    const text = await readFile(specPath, 'utf8');
    await writeFile(specPath, '{}');
    expect((await writer.sync(snapshot)).changed).toBe(true);
    await rm(specPath);
    expect((await writer.sync(snapshot)).changed).toBe(true);
    expect(await readFile(specPath, 'utf8')).toBe(text);
  });

  it('a failing rename rejects and leaves no temp file behind (a directory squats on the spec name)', async () => {
    const { kernel, writer } = await rig();
    const cdi = join(dir, 'cdi');
    await mkdir(join(cdi, CDI_SPEC_FILE), { recursive: true });
    await writeFile(join(cdi, CDI_SPEC_FILE, 'keep'), 'x'); // rename(2) of a file over a non-empty directory fails
    await expect(writer.sync(await discoverHost(kernel))).rejects.toMatchObject({ code: expect.stringMatching(/^E(ISDIR|NOTEMPTY|EXIST)$/) });
    expect(await readdir(cdi)).toEqual([CDI_SPEC_FILE]);
    // The writer is not wedged: once the squatter is gone the next sync writes.
    await rm(join(cdi, CDI_SPEC_FILE), { recursive: true });
    expect((await writer.sync(await discoverHost(kernel))).changed).toBe(true);
  });

  it('serialises concurrent syncs: the last call’s host wins', async () => {
    const { kernel, writer, specPath } = await rig();
    const before = await discoverHost(kernel);
    kernel.setDriverBinding('0000:18:00.0', 'nvidia');
    const after = await discoverHost(kernel);
    await Promise.all([writer.sync(before), writer.sync(after)]);
    expect(await names(specPath)).toEqual(['gpu-0000-3b-00-0', 'gpu-0000-9b-00-0', 'gpu-0000-bb-00-0']);
  });
});
