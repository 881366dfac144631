import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { JournalError } from '../core/errors.js';
import type { GroupRecord } from '../handoff/plan.js';
import { writeFileAtomic } from './atomic-write.js';
import { acquireFlock } from './flock.js';
import type { Journal, StateStore } from './journal.js';
import { journalProblem, recordsProblem } from './schema.js';

/**
 * The journal and records as JSON files in a state directory (the DaemonSet mounts the host's
 * /var/lib/vfio-handoff so they survive agent restarts). Every write is atomic (temp file, fsync,
 * rename): a crash leaves either the old or the new journal, never a torn one.
 */
export class FileStateStore implements StateStore {
  constructor(private readonly deps: { dir: string; pid?: number; flock?: string }) {}

  private path(name: string): string {
    return join(this.deps.dir, name);
  }

  /** The journal, or undefined when there is none; `JournalError` (exit 7) when it is not a valid journal. */
  async readJournal(): Promise<Journal | undefined> {
    const raw = await this.readJson('journal.json');
    if (raw === undefined) return undefined;
    const problem = journalProblem(raw);
    if (problem) throw new JournalError(`${this.path('journal.json')} is not a valid journal (${problem}); move it aside after checking the host by hand`);
    return raw as Journal;
  }

  async writeJournal(journal: Journal): Promise<void> {
    await this.writeJson('journal.json', journal);
  }

  async clearJournal(): Promise<void> {
    await rm(this.path('journal.json'), { force: true });
  }

  /** The records (empty when the file is absent); `JournalError` (exit 7) when the file is not valid. */
  async readRecords(): Promise<Map<number, GroupRecord>> {
    const raw = await this.readJson('records.json');
    if (raw === undefined) return new Map();
    const problem = recordsProblem(raw);
    if (problem) throw new JournalError(`${this.path('records.json')} is not a valid records file (${problem}); move it aside after checking the host by hand`);
    return new Map((raw as { groups: GroupRecord[] }).groups.map((r) => [r.group, r]));
  }

  async writeRecords(records: ReadonlyMap<number, GroupRecord>): Promise<void> {
    await this.writeJson('records.json', { version: 1, groups: [...records.values()].sort((a, b) => a.group - b.group) });
  }

  /** An exclusive flock(2) on `<dir>/lock` (see `acquireFlock`); JournalError when another run holds it. */
  async lock(): Promise<() => Promise<void>> {
    await mkdir(this.deps.dir, { recursive: true, mode: 0o700 });
    const lockPath = this.path('lock');
    // Create it if missing, never truncate or delete it: every run must lock the same inode.
    await open(lockPath, 'a', 0o600).then((fh) => fh.close(), (err: unknown) => {
      throw new JournalError(`cannot create ${lockPath}`, { cause: err });
    });
    return acquireFlock(lockPath, { flock: this.deps.flock, pid: this.deps.pid });
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
    await writeFileAtomic(this.path(name), JSON.stringify(value, null, 2) + '\n', { mode: 0o600, dirMode: 0o700 });
  }
}
