/**
 * A driver core for a materialised host tree, so a real CLI process (`--host-root`) can prepare and release
 * GPUs in it and be SIGKILLed between steps — and the "kernel" outlives it, as the real one does.
 *
 * The tree is written by src/profiles/materialise.ts from a SimulatedKernel kept in the test process. The
 * CLI's writes land in plain files; this class notices them (inotify through fs.watch, plus a slow poll as
 * a safety net), hands each to the SimulatedKernel exactly as written (the driver-core rules live there)
 * and re-renders what changed: files and links are replaced atomically (temporary name + rename), so a
 * reader never sees a half-written attribute or a missing `driver` link. Action files (`bind`, `unbind`,
 * `drivers_probe`, `new_id`, `remove_id`) are emptied after each write; `driver_override` and a vtconsole's
 * `bind` keep the last value, as sysfs reads them back. `modprobe` is a shell stand-in on PATH (see
 * `env()`) that queues the module name for this kernel to load.
 *
 * What it cannot do: return a failed write's errno to the writer (the file write has already succeeded);
 * a refused write is recorded in `refused` and the writer sees no effect, as with a silent probe failure.
 * Nor is a write synchronous as in sysfs: the writer may read back before the effect shows, so a reader
 * that polls for its effect (as the CLI's StepRunner does) sees the real sequence, one that does not may
 * act early (e.g. the CLI's fallback `bind` after a `drivers_probe`, which then meets EBUSY).
 */
import { watch, type FSWatcher } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { materialiseProfile } from '../../src/profiles/materialise.js';
import type { HostProfile } from '../../src/profiles/profile.js';
import { SimulatedKernel } from '../../src/sysfs/simulated-kernel.js';

type Node = ReturnType<SimulatedKernel['treeEntries']>[number][1];

const ACTION = /(?:^|\/)(?:bind|unbind|drivers_probe|new_id|remove_id)$/;
const VTCON_BIND = /^sys\/(?:devices\/virtual|class)\/vtconsole\/[^/]+\/bind$/;
const KEEPS_VALUE = (path: string): boolean => path.endsWith('/driver_override') || VTCON_BIND.test(path);
const WATCHED = (path: string): boolean => ACTION.test(path) || KEEPS_VALUE(path);

export class TreeKernel {
  readonly kernel: SimulatedKernel;
  /** Writes the simulated kernel refused (path, value, error), in order. */
  readonly refused: { path: string; value: string; error: string }[] = [];
  private entries = new Map<string, Node>();
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly seen = new Map<string, string>();
  private modprobeDone = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private pending = false;

  private constructor(
    readonly root: string,
    private readonly work: string,
    profile: HostProfile,
  ) {
    this.kernel = new SimulatedKernel(profile);
  }

  /** Materialises `profile` under `<work>/root` and starts serving writes. */
  static async start(profile: HostProfile, work: string): Promise<TreeKernel> {
    const tk = new TreeKernel(join(work, 'root'), work, profile);
    await materialiseProfile(tk.kernel, tk.root);
    tk.entries = new Map(tk.kernel.treeEntries());
    for (const [path, node] of tk.entries) if (node.kind === 'file' && WATCHED(path)) tk.watchFile(path, node.content);
    await mkdir(join(work, 'bin'), { recursive: true });
    await writeFile(tk.modprobeQueue, '');
    await writeFile(
      join(work, 'bin', 'modprobe'),
      '#!/bin/sh\n# Test stand-in for modprobe: queue the module (the last argument) for the tree kernel.\nfor a; do m=$a; done\nprintf \'%s\\n\' "$m" >> "$TREE_KERNEL_MODPROBE"\n',
    );
    await chmod(join(work, 'bin', 'modprobe'), 0o755);
    tk.watchers.set('#modprobe', watch(tk.modprobeQueue, () => tk.kick()));
    tk.timer = setInterval(() => tk.kick(), 100);
    return tk;
  }

  /** Environment for a CLI child: the modprobe stand-in first on PATH. */
  env(): NodeJS.ProcessEnv {
    return { ...process.env, PATH: `${join(this.work, 'bin')}:${process.env.PATH ?? ''}`, TREE_KERNEL_MODPROBE: this.modprobeQueue };
  }

  /** Stops serving `path` (a test is about to replace the attribute with something that misbehaves). */
  detach(path: string): void {
    this.watchers.get(path)?.close();
    this.watchers.delete(path);
    this.seen.delete(path);
  }

  /** Applies every write made so far (call before asserting on `kernel.state()`). */
  settle(): Promise<void> {
    this.kick();
    return this.chain;
  }

  /**
   * Re-renders the tree after the test changed `kernel` directly (a hot add or remove: removeDevice,
   * addDevice), as the kernel's sysfs would show it at once. Serialised with the writes being served.
   */
  async changed(): Promise<void> {
    this.chain = this.chain.then(() => this.render());
    await this.chain;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const w of this.watchers.values()) w.close();
    await this.chain;
  }

  private get modprobeQueue(): string {
    return join(this.work, 'modprobe.queue');
  }

  private watchFile(path: string, content: string): void {
    this.seen.set(path, content);
    if (this.watchers.has(path)) return;
    try {
      this.watchers.set(path, watch(join(this.root, path), () => this.kick()));
    } catch {
      // Vanished between render and watch (a driver unloaded): the poll covers it.
    }
  }

  private kick(): void {
    if (this.stopped || this.pending) return;
    this.pending = true;
    this.chain = this.chain.then(() => {
      this.pending = false;
      return this.scan();
    }).catch((err: unknown) => {
      this.refused.push({ path: '(tree kernel)', value: '', error: String(err) });
    });
  }

  private async scan(): Promise<void> {
    let changed = false;
    const queued = (await readFile(this.modprobeQueue, 'utf8')).split('\n').filter(Boolean);
    for (const name of queued.slice(this.modprobeDone)) {
      this.modprobeDone++;
      changed = (await this.apply(`modprobe:${name}`, name, () => this.kernel.loadModule(name))) || changed;
    }
    // Read the action files before the attributes that keep their value, and apply in the other order:
    // the CLI sets driver_override before it writes drivers_probe, so an action seen here implies that
    // the override written before it is visible in the second read.
    const read = async (path: string) => [path, await readFile(join(this.root, path), 'utf8').catch(() => undefined)] as const;
    const actions = await Promise.all([...this.seen.keys()].filter((p) => !KEEPS_VALUE(p)).map(read));
    const values = await Promise.all([...this.seen.keys()].filter((p) => KEEPS_VALUE(p)).map(read));
    for (const [path, now] of values) {
      // '' is a write caught between its O_TRUNC and its data (no sysfs store is empty: a clear writes "\n").
      if (now === undefined || now === '' || now === this.seen.get(path)) continue;
      this.seen.set(path, now);
      changed = (await this.apply(path, now, () => this.kernel.writeText(path, now))) || changed;
    }
    for (const [path, now] of actions) {
      if (now === undefined || now === '' || now === this.seen.get(path)) continue;
      await writeFile(join(this.root, path), '');
      changed = (await this.apply(path, now, () => this.kernel.writeText(path, now))) || changed;
    }
    if (changed) await this.render();
  }

  private async apply(path: string, value: string, write: () => Promise<void>): Promise<boolean> {
    try {
      await write();
    } catch (err) {
      this.refused.push({ path, value, error: err instanceof Error ? err.message : String(err) });
    }
    return true;
  }

  /** Writes the difference between the last rendered tree and the kernel's current one. */
  private async render(): Promise<void> {
    const next = new Map(this.kernel.treeEntries());
    for (const [path, node] of next) {
      const old = this.entries.get(path);
      const full = join(this.root, path);
      if (node.kind === 'dir') {
        if (old?.kind !== 'dir') await mkdir(full, { recursive: true });
        continue;
      }
      if (node.kind === 'file') {
        if (WATCHED(path)) {
          // Kept in place, so the watch follows the inode; a read-back attribute shows the kernel's value.
          if (old === undefined) {
            await writeFile(full, node.content);
            this.watchFile(path, node.content);
          } else if (KEEPS_VALUE(path) && (this.seen.get(path) ?? '').trim() !== node.content.trim()) {
            await writeFile(full, node.content);
            this.seen.set(path, node.content);
          }
          continue;
        }
        if (old?.kind === 'file' && old.content === node.content) continue;
        const tmp = join(dirname(full), `.${basename(full)}.tree-kernel`);
        await writeFile(tmp, node.content);
        await rename(tmp, full);
        continue;
      }
      if (old?.kind === 'link' && old.target === node.target) continue;
      const tmp = join(dirname(full), `.${basename(full)}.tree-kernel`);
      await rm(tmp, { force: true });
      await symlink(node.target, tmp);
      await rename(tmp, full);
    }
    // Removed entries, children before their directories.
    const gone = [...this.entries.keys()].filter((p) => p !== '' && !next.has(p)).sort((a, b) => b.length - a.length);
    for (const path of gone) {
      await rm(join(this.root, path), { recursive: true, force: true });
      const w = this.watchers.get(path);
      if (w) {
        w.close();
        this.watchers.delete(path);
      }
      this.seen.delete(path);
    }
    this.entries = next;
  }
}
