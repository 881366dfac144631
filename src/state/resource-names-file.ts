import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { PciAddress } from '../core/pci-address.js';
import { formatResourceNames, parseResourceNames, publicationKey } from '../devices/resource-names-file.js';
import type { HostSnapshot } from '../host/model.js';

/**
 * Writes `text` so a reader sees the old file or the new one, never a torn one: a temp file in the same
 * directory (rename is only atomic within one filesystem), fsync, then rename over the target.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  try {
    const fh = await open(tmp, 'w', 0o644); // 0644: the plugin container reads it without any capability
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export interface ResourceNamesPublisherDeps {
  readonly path: string;
  readonly logger: Logger;
}

type Bindings = Pick<HostSnapshot, 'functions' | 'vfioGroupNodes'>;

/**
 * The agent's side: called when the spec arrives (names only, before the pass prepares anything, so the
 * plugin knows a GPU's name before the GPU becomes ready) and after every reconcile pass (names and the
 * snapshot). Writes the file only when the names or the bindings changed since the last write (see
 * `publicationKey`). Writes are serialised in call order.
 */
export class ResourceNamesPublisher {
  private lastKey: string | undefined;
  private generation: number | undefined;
  private bindings: Bindings | undefined;
  private names: ReadonlyMap<string, string> = new Map();
  private withdrawn: ReadonlySet<string> = new Set();
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly deps: ResourceNamesPublisherDeps) {}

  /** `snapshot` omitted: the bindings of the last snapshot given still hold. */
  publish(names: ReadonlyMap<string, string>, snapshot?: Bindings): Promise<void> {
    if (snapshot) this.bindings = snapshot;
    this.names = new Map(names);
    const withdrawn = new Set(this.withdrawn);
    const key = publicationKey(names, this.bindings, withdrawn);
    const names2 = new Map(names);
    this.chain = this.chain.then(async () => {
      if (key === this.lastKey) return;
      // Continue the generation a previous agent container left in the shared volume: the plugin may
      // still hold it, and a lower number would read as going back in time in the logs.
      this.generation ??= await readGeneration(this.deps.path);
      const generation = this.generation + 1;
      try {
        await writeFileAtomic(this.deps.path, formatResourceNames(names2, generation, withdrawn));
        this.generation = generation;
        this.lastKey = key;
        this.deps.logger.info({ path: this.deps.path, generation, names: Object.fromEntries(names2) }, 'published resource names');
      } catch (err) {
        // Left unpublished (lastKey unchanged): the next pass tries again.
        this.deps.logger.error({ path: this.deps.path, err: (err as Error).message }, 'cannot write resource names file');
      }
    });
    return this.chain;
  }

  /**
   * Publishes the set of GPUs the plugin must advertise Unhealthy (the agent is giving them back); the
   * names stay as last published. Resolves when written — the plugin applies it at its next poll.
   */
  withdraw(addresses: ReadonlySet<string>): Promise<void> {
    this.withdrawn = new Set(addresses);
    return this.publish(this.names);
  }

  /** Resolves when every publish so far has been written (or has failed and been logged). */
  settled(): Promise<void> {
    return this.chain;
  }
}

async function readGeneration(path: string): Promise<number> {
  try {
    return parseResourceNames(await readFile(path, 'utf8')).generation;
  } catch {
    return 0;
  }
}

export interface ResourceNamesUpdate {
  /** Address → resource name; empty when the file is missing or bad. */
  readonly names: ReadonlyMap<PciAddress, string>;
  /** GPUs to advertise Unhealthy (being released by the agent); empty when the file is missing or bad. */
  readonly withdrawn: ReadonlySet<PciAddress>;
  /** The file's generation; undefined when it is missing or bad. */
  readonly generation: number | undefined;
}

export interface ResourceNamesFollowerDeps {
  readonly path: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often to stat the file (default 500 ms). A stat is cheap; inotify on a shared volume is not portable. */
  readonly intervalMs?: number;
  /** Called for every change of the file (new content, appeared, vanished, became bad). */
  readonly onChange: (update: ResourceNamesUpdate) => void;
}

/**
 * The plugin's side: follows the file by polling its stat (inode, size, mtime; the atomic rename gives
 * every write a new inode) and re-reads it when that moves. A missing file means no overrides; a bad one
 * too, with a warning — the plugin keeps serving either way.
 */
export class ResourceNamesFollower {
  private stamp: string | undefined;
  private current: ResourceNamesUpdate = { names: new Map(), withdrawn: new Set(), generation: undefined };
  private inflight: Promise<boolean> | undefined;

  constructor(private readonly deps: ResourceNamesFollowerDeps) {}

  /** The last state read (after `check()` or a loop tick). */
  get latest(): ResourceNamesUpdate {
    return this.current;
  }

  /**
   * Reads the file now; returns whether it changed since the last check (and calls `onChange` if so).
   * Calls are serialised: a check that finds another in flight runs after it, so when any call resolves,
   * `onChange` has seen the file as of that call (the plugin's scans rely on this).
   */
  check(): Promise<boolean> {
    const run = (this.inflight ?? Promise.resolve(false)).catch(() => false).then(() => this.checkOnce());
    this.inflight = run;
    return run;
  }

  private async checkOnce(): Promise<boolean> {
    const st = await stat(this.deps.path).catch((err: NodeJS.ErrnoException) => err);
    const stamp = st instanceof Error ? (st.code === 'ENOENT' ? 'missing' : `error:${st.code ?? st.message}`) : `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (stamp === this.stamp) return false;
    this.stamp = stamp;
    let next: ResourceNamesUpdate = { names: new Map(), withdrawn: new Set(), generation: undefined };
    if (stamp === 'missing') {
      this.deps.logger.info({ path: this.deps.path }, 'no resource names file: default resource names');
    } else {
      try {
        const doc = parseResourceNames(await readFile(this.deps.path, 'utf8'));
        next = { names: doc.names, withdrawn: doc.withdrawn, generation: doc.generation };
        this.deps.logger.info({ path: this.deps.path, generation: doc.generation, names: Object.fromEntries(doc.names) }, 'resource names file read');
      } catch (err) {
        // Vanished between stat and read: the same as missing. Anything else is a bad file, warned about
        // once per version of it (the stamp stays, so the next tick does not warn again).
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.stamp = 'missing';
        else this.deps.logger.warn({ path: this.deps.path, err: (err as Error).message }, 'ignoring bad resource names file: default resource names');
      }
    }
    this.current = next;
    this.deps.onChange(next);
    return true;
  }

  /** Waits (up to `timeoutMs`) for the file to exist; for a plugin that starts beside a fresh agent. */
  async waitForFile(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = this.deps.clock.now() + timeoutMs;
    for (;;) {
      if (await stat(this.deps.path).then(() => true, () => false)) return true;
      if (this.deps.clock.now() >= deadline || signal?.aborted) return false;
      await this.deps.clock.sleep(Math.min(this.deps.intervalMs ?? 500, Math.max(1, deadline - this.deps.clock.now())), signal).catch(() => undefined);
    }
  }

  /** Polls until `signal` aborts. Never throws: a failing check is logged and retried at the next tick. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.deps.clock.sleep(this.deps.intervalMs ?? 500, signal);
      } catch {
        return;
      }
      try {
        await this.check();
      } catch (err) {
        this.deps.logger.warn({ path: this.deps.path, err: (err as Error).message }, 'resource names check failed');
      }
    }
  }
}
