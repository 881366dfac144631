import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, realpath, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { RollbackFailedError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { NodeHost } from '../../../src/sysfs/node-host.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { WriterProcess } from '../../../src/sysfs/writer-process.js';
import { FileStateStore } from '../../../src/state/file-state-store.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

const sel = (...s: string[]) => ({ all: false as const, selectors: parseSelectors(s) });
const WRITE_TIMEOUT = 300;

async function simulated(profile: string) {
  const kernel = new SimulatedKernel(await loadBuiltinProfile(profile));
  const store = new MemoryStateStore();
  const engine = (): HandoffEngine =>
    new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: WRITE_TIMEOUT });
  return { kernel, store, sut: engine(), engine };
}

async function driverOf(kernel: SimulatedKernel, addr: string): Promise<string | undefined> {
  return (await kernel.readLink(`sys/bus/pci/devices/${addr}/driver`))?.split('/').pop();
}

const writesTo = (kernel: SimulatedKernel, addr: string) => kernel.writeLog.filter((w) => w.path.includes(addr) || w.value.includes(addr));

describe('a write that never returns (simulated kernel: the hang ignores our abort, like a stuck remove())', () => {
  it('hung driver_override: gives up after the write timeout, journals the hang, rolls back, never writes to that device again', async () => {
    const { kernel, store, sut } = await simulated('server-aspeed-4xh100');
    kernel.injectHang({ path: 'sys/bus/pci/devices/0000:18:00.0/driver_override' });
    const t0 = Date.now();
    const rep = await sut.prepare(sel('0000:18:00.0'), { allowBootGpu: false });
    expect(Date.now() - t0).toBeLessThan(WRITE_TIMEOUT + 5_000);
    const o = rep.outcomes[0]!;
    expect(o.outcome).toBe('rolled_back');
    expect(o.error).toMatchObject({ code: 'TIMEOUT', message: expect.stringContaining('sys/bus/pci/devices/0000:18:00.0/driver_override') });
    expect(kernel.hungWrites).toBe(1);
    // The kernel may still apply the write: the journal keeps the group `failed` with the hang, for the next run.
    expect(store.journal?.groups[0]).toMatchObject({ group: 31, status: 'failed', hung: { target: '0000:18:00.0' } });
    expect(await driverOf(kernel, '0000:18:00.0')).toBe('nvidia');

    // Same process (the agent's engine): the device is not retried; another GPU still works.
    const again = await sut.prepare(sel('0000:18:00.0', '0000:3b:00.0'), { allowBootGpu: false });
    expect(again.recovered.map((r) => r.outcome)).toEqual(['rolled_back']);
    const byGroup = Object.fromEntries(again.outcomes.map((x) => [x.group, x]));
    expect(byGroup[31]?.outcome).toBe('rolled_back');
    expect(byGroup[31]?.error?.message).toMatch(/not writing to 0000:18:00\.0/);
    expect(byGroup[45]?.outcome).toBe('prepared');
    expect(writesTo(kernel, '0000:18:00.0')).toHaveLength(1);
  });

  it('hung audio unbind: the rollback needs that device, so it reports rollback_failed with the state, keeps journal and records, and the next run refuses', async () => {
    const { kernel, store, sut, engine } = await simulated('workstation-efifb');
    kernel.injectHang({ path: 'sys/bus/pci/drivers/snd_hda_intel/unbind', times: 1 });
    const rep = await sut.prepare(sel('0000:01:00.0'), { allowBootGpu: true });
    const o = rep.outcomes[0]!;
    expect(o.outcome).toBe('rollback_failed');
    expect(o.error?.code).toBe('TIMEOUT');
    expect(o.rollbackError?.code).toBe('ROLLBACK_FAILED');
    expect(o.rollbackError?.message).toMatch(/0000:01:00\.1 on snd_hda_intel \(driver_override vfio-pci\)/);
    expect(o.rollback?.find((s) => s.outcome === 'failed')?.error?.message).toMatch(/not writing to 0000:01:00\.1/);
    expect(store.journal?.groups[0]).toMatchObject({ status: 'failed', hung: { target: '0000:01:00.1' } });
    expect(store.records.has(1)).toBe(true);
    expect(writesTo(kernel, '0000:01:00.1').filter((w) => w.path.includes('unbind') || w.path.endsWith('driver_override'))).toHaveLength(2); // set-override, the hung unbind

    // The next run in this process must not overwrite the journal with its own.
    const before = structuredClone(store.journal);
    const writes = kernel.writeLog.length;
    const hungDeviceWrites = writesTo(kernel, '0000:01:00.1').length;
    await expect(sut.prepare(sel('0000:01:00.0'), { allowBootGpu: true })).rejects.toBeInstanceOf(RollbackFailedError);
    expect(store.journal).toEqual(before);
    // Its recovery retried the rollback (idempotent steps) but nothing touched the hung device, and nothing new was planned.
    expect(writesTo(kernel, '0000:01:00.1').length).toBe(hungDeviceWrites);
    expect(kernel.writeLog.slice(writes).filter((w) => w.path.endsWith('driver_override') && w.value !== '\n')).toEqual([]);

    // The kernel lets go; a new process (new engine) finishes the rollback and clears the journal.
    kernel.releaseHangs();
    await new Promise((r) => setTimeout(r, 10));
    const later = await engine().release(sel('0000:01:00.0'));
    expect(later.recovered.map((r) => r.outcome)).toEqual(['rolled_back']);
    expect(store.journal).toBeUndefined();
    expect(await driverOf(kernel, '0000:01:00.1')).toBe('snd_hda_intel');
    expect(await kernel.exists('dev/vfio/1')).toBe(false);
  });

  it('a hung modprobe fails the run before any group is touched', async () => {
    const { kernel, sut } = await simulated('server-aspeed-4xh100');
    kernel.injectHang({ path: 'modprobe:vfio-pci' });
    const rep = await sut.prepare(sel('0000:18:00.0'), { allowBootGpu: false });
    expect(rep.outcomes[0]).toMatchObject({ outcome: 'failed', error: { code: 'TIMEOUT' } });
    expect(kernel.writeLog.filter((w) => w.kind === 'write')).toEqual([]);
  });
});

describe('a write that never returns on a materialised tree (NodeHost; a FIFO nobody reads is the stuck attribute)', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('six GPUs hang in one process: each gives up in time, the journal names the hang, and the process keeps working', async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-hung-'));
    const root = join(dir, 'root');
    await materialiseProfile(await loadBuiltinProfile('bench-16gpu'), root);
    await mkdir(join(root, 'sys/bus/pci/drivers/vfio-pci'), { recursive: true }); // "loaded"
    // modprobe vfio-pci pulls vfio_iommu_type1 in (vfio's softdep), so no load-module step is planned:
    // a test must never run modprobe on the machine it runs on.
    await mkdir(join(root, 'sys/module/vfio_iommu_type1'), { recursive: true });
    const writer = new WriterProcess({ idleMs: 500 });
    const host = new NodeHost({ root, writer });
    const store = new FileStateStore({ dir: join(dir, 'state') });
    const sut = new HandoffEngine({ host, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200, writeTimeoutMs: WRITE_TIMEOUT });
    const gpus = (await sut.inspect({ allowBootGpu: false })).assessments.filter((a) => a.verdict === 'preparable').map((a) => a.gpu.fn.address).slice(0, 6);
    expect(gpus).toHaveLength(6);
    for (const a of gpus) {
      const attr = join(await realpath(join(root, 'sys/bus/pci/devices', a)), 'driver_override');
      await unlink(attr);
      execFileSync('mkfifo', [attr]);
    }
    for (const a of gpus) {
      const t0 = Date.now();
      const rep = await sut.prepare(sel(a), { allowBootGpu: false });
      expect(Date.now() - t0).toBeLessThan(WRITE_TIMEOUT + 5_000);
      expect(rep.outcomes[0]).toMatchObject({ outcome: 'rolled_back', error: { code: 'TIMEOUT', message: expect.stringContaining(`${a}/driver_override`) } });
      const journal = JSON.parse(await readFile(join(dir, 'state/journal.json'), 'utf8'));
      expect(journal.groups[0]).toMatchObject({ status: 'failed', hung: { target: a } });
    }
    expect(writer.abandoned).toHaveLength(6);
    // Still able to read the whole tree (no pool thread is stuck) and to write elsewhere.
    const after = await sut.inspect({ allowBootGpu: false });
    expect(after.assessments.length).toBeGreaterThan(6);
    host.close();
  });
});
