import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import type { PciFunction } from '../host/model.js';
import { formatResourceNames, parseResourceNames } from '../devices/resource-names-file.js';
import { ResourceNamesFollower, ResourceNamesPublisher, writeFileAtomic, type ResourceNamesUpdate } from './resource-names-file.js';

const A = '0000:18:00.0';
const host = (driver: string) => ({ functions: [{ address: A, driver } as unknown as PciFunction], vfioGroupNodes: [] });

/** Records warnings so the tests can tell "bad file" (warned) from "missing file" (not warned). */
function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { ...silentLogger, warn: (_fields: object, msg: string) => void warnings.push(msg), child: () => recordingLogger(), warnings } as unknown as Logger & { warnings: string[] };
}

const fakeClock = (): Clock & { advance(ms: number): void } => {
  let now = 0;
  return { now: () => now, sleep: async (ms) => void (now += ms), advance: (ms) => void (now += ms) };
};

describe('resource names file I/O', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-names-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes atomically and leaves no temp file behind', async () => {
    const path = join(dir, 'sub', 'names.json');
    await writeFileAtomic(path, 'one');
    await writeFileAtomic(path, 'two');
    expect(await readFile(path, 'utf8')).toBe('two');
    expect(await readdir(join(dir, 'sub'))).toEqual(['names.json']);
  });

  it('publishes only when names or bindings change, with a growing generation that survives a restart', async () => {
    const path = join(dir, 'names.json');
    const p1 = new ResourceNamesPublisher({ path, logger: silentLogger });
    await p1.publish(new Map([[A, 'example.com/h100']]), host('nvidia'));
    expect(parseResourceNames(await readFile(path, 'utf8')).generation).toBe(1);
    await p1.publish(new Map([[A, 'example.com/h100']]), host('nvidia')); // idle resync: no write
    expect(parseResourceNames(await readFile(path, 'utf8')).generation).toBe(1);
    await p1.publish(new Map([[A, 'example.com/h100']]), host('vfio-pci')); // bindings changed: new generation
    const doc = parseResourceNames(await readFile(path, 'utf8'));
    expect(doc.generation).toBe(2);
    expect(doc.names.get(A as never)).toBe('example.com/h100');
    // A restarted agent container continues from the file it finds.
    const p2 = new ResourceNamesPublisher({ path, logger: silentLogger });
    await p2.publish(new Map(), host('vfio-pci'));
    const after = parseResourceNames(await readFile(path, 'utf8'));
    expect(after.generation).toBe(3);
    expect(after.names.size).toBe(0);
  });

  it('retries a failed write at the next publish', async () => {
    const blocker = join(dir, 'file');
    await writeFile(blocker, 'x'); // a file where a directory should be: mkdir fails
    const path = join(blocker, 'names.json');
    const p = new ResourceNamesPublisher({ path, logger: silentLogger });
    await p.publish(new Map([[A, 'example.com/h100']]), host('nvidia'));
    await rm(blocker);
    await p.publish(new Map([[A, 'example.com/h100']]), host('nvidia'));
    expect(parseResourceNames(await readFile(path, 'utf8')).names.get(A as never)).toBe('example.com/h100');
  });

  it('follows the file: missing → names → bad (warned, no names) → names again; unchanged files are not re-read', async () => {
    const path = join(dir, 'names.json');
    const updates: ResourceNamesUpdate[] = [];
    const logger = recordingLogger();
    const f = new ResourceNamesFollower({ path, clock: fakeClock(), logger, onChange: (u) => updates.push(u) });
    expect(await f.check()).toBe(true);
    expect(updates.at(-1)?.names.size).toBe(0);
    expect(await f.check()).toBe(false);
    expect(logger.warnings).toEqual([]);

    await writeFileAtomic(path, formatResourceNames(new Map([[A, 'example.com/h100']]), 1));
    expect(await f.check()).toBe(true);
    expect(updates.at(-1)?.names.get(A as never)).toBe('example.com/h100');
    expect(updates.at(-1)?.generation).toBe(1);
    expect(await f.check()).toBe(false);

    await writeFileAtomic(path, '{"version":1,"names":{"0000:18:00.0":"no-domain"}}');
    expect(await f.check()).toBe(true);
    expect(updates.at(-1)).toEqual({ names: new Map(), withdrawn: new Set(), generation: undefined });
    expect(logger.warnings).toHaveLength(1);
    expect(await f.check()).toBe(false);
    expect(logger.warnings).toHaveLength(1); // warned once per bad version, not every tick

    await writeFileAtomic(path, formatResourceNames(new Map([[A, 'example.com/h100b']]), 2));
    expect(await f.check()).toBe(true);
    expect(f.latest.names.get(A as never)).toBe('example.com/h100b');
    expect(updates).toHaveLength(4);

    // The release window: GPUs the agent withdraws reach the plugin through the same file.
    await writeFileAtomic(path, formatResourceNames(new Map([[A, 'example.com/h100b']]), 3, new Set([A])));
    expect(await f.check()).toBe(true);
    expect([...f.latest.withdrawn]).toEqual([A]);
  });

  it('serialises concurrent checks: each resolves only after onChange saw the file as of its call', async () => {
    const path = join(dir, 'names.json');
    const seen: string[] = [];
    const f = new ResourceNamesFollower({ path, clock: fakeClock(), logger: silentLogger, onChange: (u) => seen.push(u.names.get(A as never) ?? '-') });
    await f.check();
    await writeFileAtomic(path, formatResourceNames(new Map([[A, 'example.com/h100']]), 1));
    // Two callers at once (the poll loop and a scan): the second must not return before the names applied.
    const first = f.check();
    const second = f.check().then((changed) => ({ changed, names: [...seen] }));
    expect(await first).toBe(true);
    expect(await second).toEqual({ changed: false, names: ['-', 'example.com/h100'] });
  });

  it('waits for the file up to the timeout', async () => {
    const path = join(dir, 'names.json');
    const clock = fakeClock();
    const f = new ResourceNamesFollower({ path, clock, logger: silentLogger, intervalMs: 100, onChange: () => undefined });
    expect(await f.waitForFile(1_000)).toBe(false);
    expect(clock.now()).toBe(1_000);
    await writeFileAtomic(path, formatResourceNames(new Map(), 1));
    expect(await f.waitForFile(1_000)).toBe(true);
    expect(clock.now()).toBe(1_000); // present: no waiting
  });

  it('run() picks up a change within a tick and stops on abort', async () => {
    const path = join(dir, 'names.json');
    const seen: ResourceNamesUpdate[] = [];
    const realish: Clock = { now: () => Date.now(), sleep: (ms, signal) => new Promise((res, rej) => { const t = setTimeout(res, ms); signal?.addEventListener('abort', () => { clearTimeout(t); rej(new Error('aborted')); }, { once: true }); }) };
    const f = new ResourceNamesFollower({ path, clock: realish, logger: silentLogger, intervalMs: 20, onChange: (u) => seen.push(u) });
    await f.check();
    const ac = new AbortController();
    const running = f.run(ac.signal);
    await writeFileAtomic(path, formatResourceNames(new Map([[A, 'example.com/h100']]), 1));
    const deadline = Date.now() + 2_000;
    while (seen.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(seen.at(-1)?.names.get(A as never)).toBe('example.com/h100');
    ac.abort();
    await expect(running).resolves.toBeUndefined();
  });
});
