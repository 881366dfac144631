import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { JournalError } from '../core/errors.js';
import type { GroupRecord } from '../handoff/plan.js';
import type { Journal, StateStore } from './journal.js';

/**
 * The journal and records as JSON files in a state directory (the DaemonSet mounts the host's
 * /var/lib/vfio-handoff so they survive agent restarts). Every write is atomic (temp file, fsync,
 * rename): a crash leaves either the old or the new journal, never a torn one.
 */
export class FileStateStore implements StateStore {
  constructor(private readonly deps: { dir: string; pid?: number; isAlive?: (pid: number) => boolean }) {}

  private path(name: string): string {
    return join(this.deps.dir, name);
  }

  async readJournal(): Promise<Journal | undefined> {
    const raw = await this.readJson('journal.json');
    if (raw === undefined) return undefined;
    if ((raw as Journal).version !== 1 || !Array.isArray((raw as Journal).groups)) {
      throw new JournalError(`unrecognised journal in ${this.path('journal.json')}; move it aside after checking the host by hand`);
    }
    return raw as Journal;
  }

  async writeJournal(journal: Journal): Promise<void> {
    await this.writeJson('journal.json', journal);
  }

  async clearJournal(): Promise<void> {
    await rm(this.path('journal.json'), { force: true });
  }

  async readRecords(): Promise<Map<number, GroupRecord>> {
    const raw = (await this.readJson('records.json')) as { groups?: GroupRecord[] } | undefined;
    return new Map((raw?.groups ?? []).map((r) => [r.group, r]));
  }

  async writeRecords(records: ReadonlyMap<number, GroupRecord>): Promise<void> {
    await this.writeJson('records.json', { version: 1, groups: [...records.values()].sort((a, b) => a.group - b.group) });
  }

  async lock(): Promise<() => Promise<void>> {
    await mkdir(this.deps.dir, { recursive: true, mode: 0o700 });
    const lockPath = this.path('lock');
    const pid = this.deps.pid ?? process.pid;
    const isAlive = this.deps.isAlive ?? defaultIsAlive;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(lockPath, 'wx', 0o600);
        await fh.writeFile(String(pid));
        await fh.close();
        return async () => {
          await rm(lockPath, { force: true });
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new JournalError(`cannot create ${lockPath}`, { cause: err });
        const holder = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
        if (Number.isInteger(holder) && holder > 0 && holder !== pid && isAlive(holder)) {
          throw new JournalError(`another vfio-handoff run (pid ${holder}) holds ${lockPath}`);
        }
        // The holder died (e.g. SIGKILL mid-prepare): the lock is stale, the journal tells what to recover.
        await rm(lockPath, { force: true });
      }
    }
    throw new JournalError(`cannot take ${lockPath}`);
  }

  private async readJson(name: string): Promise<unknown> {
    let text: string;
    try {
      text = await readFile(this.path(name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new JournalError(`cannot read ${this.path(name)}`, { cause: err });
    }
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new JournalError(`${this.path(name)} is not valid JSON; move it aside after checking the host by hand`, { cause: err });
    }
  }

  private async writeJson(name: string, value: unknown): Promise<void> {
    await mkdir(this.deps.dir, { recursive: true, mode: 0o700 });
    const tmp = this.path(`.${name}.${process.pid}.tmp`);
    await writeFile(tmp, JSON.stringify(value, null, 2) + '\n', { mode: 0o600 });
    const fh = await open(tmp, 'r+');
    await fh.sync();
    await fh.close();
    await rename(tmp, this.path(name));
  }
}

function defaultIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
