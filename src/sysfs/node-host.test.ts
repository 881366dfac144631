import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HostReadError, HostWriteError, InvalidArgumentError, TimeoutError } from '../core/errors.js';
import { NodeHost } from './node-host.js';
import { WriterProcess } from './writer-process.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'vfio-handoff-nodehost-'));
  await mkdir(join(root, 'sys/devices/pci0000:00/0000:00:02.0'), { recursive: true });
  await mkdir(join(root, 'sys/bus/pci/devices'), { recursive: true });
  await writeFile(join(root, 'sys/devices/pci0000:00/0000:00:02.0/vendor'), '0x1234\n');
  await symlink('../../../devices/pci0000:00/0000:00:02.0', join(root, 'sys/bus/pci/devices/0000:00:02.0'));
  await symlink('../../../nowhere', join(root, 'sys/bus/pci/devices/dangling'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe(NodeHost.name, () => {
  it('reads text, links and sorted lists relative to its root', async () => {
    const sut = new NodeHost({ root });
    expect(await sut.readText('sys/bus/pci/devices/0000:00:02.0/vendor')).toBe('0x1234\n');
    expect(await sut.readLink('sys/bus/pci/devices/0000:00:02.0')).toBe('../../../devices/pci0000:00/0000:00:02.0');
    expect(await sut.list('sys/bus/pci/devices')).toEqual(['0000:00:02.0', 'dangling']);
    expect(sut.stats().reads).toBe(3);
  });

  it('maps absence to undefined / [] / false, and a dangling link to absent', async () => {
    const sut = new NodeHost({ root });
    expect(await sut.readText('sys/nope')).toBeUndefined();
    expect(await sut.readText('sys/bus/pci/devices/0000:00:02.0/vendor/x')).toBeUndefined();
    expect(await sut.readLink('sys/bus/pci/devices/0000:00:02.0/vendor')).toBeUndefined(); // not a link
    expect(await sut.list('sys/nope')).toEqual([]);
    expect(await sut.exists('sys/bus/pci/devices/dangling')).toBe(false);
    expect(await sut.exists('sys/bus/pci/devices/0000:00:02.0')).toBe(true);
  });

  it('wraps other errors in HostReadError with the errno and cause', async () => {
    const sut = new NodeHost({ root });
    const err = await sut.readText('sys/bus').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostReadError);
    expect((err as HostReadError).errno).toBe('EISDIR');
    expect((err as HostReadError).cause).toBeDefined();
    await expect(sut.list('sys/bus/pci/devices/0000:00:02.0/vendor')).rejects.toMatchObject({ errno: 'ENOTDIR' });
  });

  it.each(['../etc/passwd', '/etc/passwd', 'sys/../../etc', 'sys/\0', 'sys//bus'])('refuses the path %j', async (p) => {
    const sut = new NodeHost({ root });
    await expect(sut.readText(p)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(sut.writeText(p, 'x')).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('writes an existing attribute in one write and never creates files', async () => {
    const sut = new NodeHost({ root });
    const p = 'sys/bus/pci/devices/0000:00:02.0/vendor';
    await sut.writeText(p, 'vfio-pci');
    expect(await readFile(join(root, 'sys/devices/pci0000:00/0000:00:02.0/vendor'), 'utf8')).toBe('vfio-pci');
    const err = await sut.writeText('sys/bus/pci/devices/0000:00:02.0/driver_override', 'x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostWriteError);
    expect((err as HostWriteError).errno).toBe('ENOENT');
    expect(sut.stats().writes).toBe(2);
  });

  it('rejects an already-aborted write without writing', async () => {
    const sut = new NodeHost({ root });
    await expect(sut.writeText('sys/bus/pci/devices/0000:00:02.0/vendor', 'x', { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(TimeoutError);
    expect(await sut.readText('sys/bus/pci/devices/0000:00:02.0/vendor')).toBe('0x1234\n');
  });

  it('walks away from writes that never return: six hung FIFO writes, then reads and writes still work and every stuck writer is dead', async () => {
    const { execFileSync } = await import('node:child_process');
    const writer = new WriterProcess({ idleMs: 200 });
    const sut = new NodeHost({ root, writer });
    for (let i = 0; i < 6; i++) {
      // A FIFO nobody reads: open(O_WRONLY) blocks for ever, like a store stuck in a driver's remove().
      execFileSync('mkfifo', [join(root, `sys/stuck${i}`)]);
      const ac = new AbortController();
      const p = sut.writeText(`sys/stuck${i}`, '1', { signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await expect(p).rejects.toBeInstanceOf(TimeoutError);
    }
    expect(writer.abandoned).toHaveLength(6);
    // With writes on libuv's pool of 4 threads these would now queue for ever behind the stuck ones.
    expect(await sut.readText('sys/bus/pci/devices/0000:00:02.0/vendor')).toBe('0x1234\n');
    expect(await sut.readText('sys/stuck0')).toBe(''); // reads never block on a FIFO (O_NONBLOCK)
    await sut.writeText('sys/bus/pci/devices/0000:00:02.0/vendor', 'ok');
    expect(await readFile(join(root, 'sys/devices/pci0000:00/0000:00:02.0/vendor'), 'utf8')).toBe('ok');
    await vi.waitFor(() => expect(writer.abandoned.filter(alive)).toEqual([]), { timeout: 5_000 });
    sut.close();
  });

  it('loadModule validates the name and runs modprobe with -d for a non-/ root', async () => {
    const script = join(root, 'fake-modprobe');
    await writeFile(script, `#!/bin/sh\necho "$@" > "${root}/args"\n[ "$3" = ok ] || { echo "modprobe: FATAL: Module $3 not found" >&2; exit 1; }\n`, { mode: 0o755 });
    const sut = new NodeHost({ root, modprobe: script });
    await sut.loadModule('ok');
    expect(await readFile(join(root, 'args'), 'utf8')).toBe(`-d ${root} ok\n`);
    await expect(sut.loadModule('missing')).rejects.toMatchObject({ code: 'HOST_WRITE_FAILED', errno: 'ENOENT' });
    await expect(sut.loadModule('-v')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(sut.loadModule('a/b')).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
