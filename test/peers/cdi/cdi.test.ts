/**
 * The CDI library container runtimes use (tags.cncf.io/container-device-interface v1.0.1, the cache
 * containerd and CRI-O build from /etc/cdi and /var/run/cdi; test/peers/cdi) reads the spec src/cdi writes:
 * every GPU resolves to the fully-qualified name Allocate returns, with no error; and, as hostile cases,
 * the library does reject what we take care never to write (an unknown spec version, a second spec file
 * naming the same devices — why stale files of ours are removed).
 */
import { execFileSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CDI_SPEC_FILE } from '../../../src/cdi/spec.js';
import { CdiSpecWriter } from '../../../src/cdi/writer.js';
import { silentLogger } from '../../../src/core/logger.js';
import { cdiDeviceId } from '../../../src/devices/names.js';
import { discoverHost } from '../../../src/host/discover.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { NodeSpecDir } from '../../../src/state/spec-dir.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { peerBinary } from '../../support/peers.js';

const bin = peerBinary('cdi', 'cdi-cache');
type CacheView = { devices: string[]; errors: Record<string, string[]>; dirErrors: Record<string, string> };
const load = (dir: string): CacheView => JSON.parse(execFileSync(bin.path!, [dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as CacheView;

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function written(profile: string, iommufd: boolean): Promise<{ dir: string; addresses: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'vh-cdi-peer-'));
  dirs.push(dir);
  const kernel = new SimulatedKernel({ ...(await loadBuiltinProfile(profile)), iommufd });
  const snapshot = await discoverHost(kernel);
  const r = await new CdiSpecWriter({ dir: new NodeSpecDir({ dir }), logger: silentLogger }).sync(snapshot);
  expect(r.changed).toBe(true);
  return { dir, addresses: snapshot.gpus.filter((g) => g.fn.driver === 'vfio-pci').map((g) => g.fn.address) };
}

describe.skipIf(bin.skip !== undefined)(`CDI library v1.0.1 reads our spec${bin.skip ? ` (skipped: ${bin.skip})` : ''}`, () => {
  it.each([
    ['with iommufd', true],
    ['without iommufd', false],
  ])('resolves every GPU of the L40S server to the CDI ID Allocate returns, with no error (%s)', async (_name, iommufd) => {
    const { dir, addresses } = await written('server-aspeed-l40s-vfio', iommufd);
    const view = load(dir);
    expect(view.errors).toEqual({});
    expect(view.dirErrors).toEqual({});
    expect(view.devices.sort()).toEqual(addresses.map(cdiDeviceId).sort());
    expect(view.devices).toHaveLength(4);
  });

  it('refuses a spec version it does not know (so the version we write matters)', async () => {
    const { dir } = await written('server-aspeed-l40s-vfio', false);
    const path = join(dir, CDI_SPEC_FILE);
    await writeFile(path, (await readFile(path, 'utf8')).replace('"cdiVersion": "0.5.0"', '"cdiVersion": "9.9.9"'));
    const view = load(dir);
    expect(view.devices).toEqual([]);
    expect(Object.keys(view.errors)).toEqual([path]);
  });

  it('marks the devices conflicting when a second spec file names them — the stale file our writer removes', async () => {
    const { dir } = await written('server-aspeed-l40s-vfio', false);
    await copyFile(join(dir, CDI_SPEC_FILE), join(dir, 'handoff.dev-gpu-old.json'));
    const conflicted = load(dir);
    expect(conflicted.devices).toEqual([]);
    expect(Object.values(conflicted.errors).flat().join('\n')).toMatch(/conflict/i);
    // Our next sync removes the stale file and the library resolves every device again.
    const kernel = new SimulatedKernel({ ...(await loadBuiltinProfile('server-aspeed-l40s-vfio')), iommufd: false });
    const r = await new CdiSpecWriter({ dir: new NodeSpecDir({ dir }), logger: silentLogger }).sync(await discoverHost(kernel));
    expect(r.removed).toEqual(['handoff.dev-gpu-old.json']);
    expect(load(dir).devices).toHaveLength(4);
  });
});
