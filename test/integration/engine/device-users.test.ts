import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { InUseError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { NodeHost } from '../../../src/sysfs/node-host.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

/** Adds a process to the materialised /proc holding `target` open as fd 7. */
async function addProcess(root: string, pid: number, comm: string, target: string): Promise<void> {
  await mkdir(join(root, 'proc', String(pid), 'fd'), { recursive: true });
  await writeFile(join(root, 'proc', String(pid), 'comm'), `${comm}\n`);
  await symlink(target, join(root, 'proc', String(pid), 'fd', '7'));
}

describe('processes holding GPU device files (procfs scan through the host port)', () => {
  let root: string;
  afterEach(async () => rm(root, { recursive: true, force: true }));

  it('blocks prepare with HOST_DRIVER_BUSY naming the pid when a host process holds the GPU\u2019s DRM node', async () => {
    root = await mkdtemp(join(tmpdir(), 'vh-users-'));
    await materialiseProfile(await loadBuiltinProfile('server-aspeed-4xh100'), root);
    await mkdir(join(root, 'sys/bus/pci/devices/0000:18:00.0/drm/card1'), { recursive: true });
    await addProcess(root, 4242, 'nvidia-persiste', '/dev/dri/card1');
    await addProcess(root, 4343, 'bash', '/dev/pts/0');
    const sut = new HandoffEngine({ host: new NodeHost({ root }), store: new MemoryStateStore(), clock: realClock, logger: silentLogger, scanDeviceUsers: true });
    const report = await sut.inspect({ allowBootGpu: false });
    const busy = report.assessments.find((a) => a.gpu.fn.address === '0000:18:00.0')!;
    expect(busy.verdict).toBe('blocked');
    expect(busy.reasons).toEqual([{ code: 'HOST_DRIVER_BUSY', message: expect.stringContaining('pid 4242 (nvidia-persiste) holds /dev/dri/card1') }]);
    expect(report.assessments.find((a) => a.gpu.fn.address === '0000:3b:00.0')!.verdict).toBe('preparable');
  });

  it('refuses to release a group whose /dev/vfio node a VMM holds (IN_USE), unless forced', async () => {
    root = await mkdtemp(join(tmpdir(), 'vh-users-'));
    await materialiseProfile(await loadBuiltinProfile('server-aspeed-l40s-vfio'), root);
    await addProcess(root, 777, 'qemu-kvm', '/dev/vfio/31');
    // As if vfio-handoff had prepared the group: release gives back only what prepare took.
    const store = new MemoryStateStore();
    store.records.set(31, { group: 31, gpus: ['0000:18:00.0' as PciAddress], originalDrivers: { '0000:18:00.0': 'nvidia' }, originalOverrides: { '0000:18:00.0': null }, framebuffers: [], vtconsoles: [] });
    const sut = new HandoffEngine({ host: new NodeHost({ root }), store, clock: realClock, logger: silentLogger, scanDeviceUsers: true });
    const sel = { all: false as const, selectors: [{ kind: 'address' as const, address: '0000:18:00.0' as PciAddress }] };
    await expect(sut.release(sel)).rejects.toBeInstanceOf(InUseError);
    await expect(sut.release(sel)).rejects.toThrow(/\/dev\/vfio\/31 is open by pid 777 \(qemu-kvm\)/);
    const forced = await sut.release(sel, { dryRun: true, force: true });
    expect(forced.plan.groups[0]?.steps.map((s) => s.kind)).toContain('unbind-driver');
  });
  it('apply (the agent\u2019s one run) leaves a group a VMM holds with outcome in_use and still plans the others', async () => {
    root = await mkdtemp(join(tmpdir(), 'vh-users-'));
    await materialiseProfile(await loadBuiltinProfile('server-aspeed-l40s-vfio'), root);
    await addProcess(root, 777, 'qemu-kvm', '/dev/vfio/31');
    const store = new MemoryStateStore();
    for (const [group, gpu] of [[31, '0000:18:00.0'], [45, '0000:3b:00.0']] as const) {
      store.records.set(group, { group, gpus: [gpu as PciAddress], originalDrivers: { [gpu]: 'nvidia' }, originalOverrides: { [gpu]: null }, framebuffers: [], vtconsoles: [] });
    }
    const sut = new HandoffEngine({ host: new NodeHost({ root }), store, clock: realClock, logger: silentLogger, scanDeviceUsers: true });
    const report = await sut.apply(
      [
        { address: '0000:18:00.0' as PciAddress, want: 'host' },
        { address: '0000:3b:00.0' as PciAddress, want: 'host' },
      ],
      { dryRun: true },
    );
    expect(report.gpus[0]).toEqual({ address: '0000:18:00.0', want: 'host', outcome: 'in_use', error: { code: 'IN_USE', message: 'refusing to release: /dev/vfio/31 is open by pid 777 (qemu-kvm)' } });
    expect(report.release.plan.groups.map((g) => g.gpus)).toEqual([['0000:3b:00.0']]);
  });
});
