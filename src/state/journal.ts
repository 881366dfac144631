import type { FunctionState, GroupRecord } from '../handoff/plan.js';
import type { Step } from '../handoff/steps.js';

/**
 * The journal of an in-flight prepare/release. It is written before the first host write and after
 * every step, so a run that dies at any point (SIGKILL, node crash) leaves enough behind for the next
 * run to finish the job or undo it — never a half-bound group.
 */
export interface JournalGroup {
  readonly group: number;
  readonly record: GroupRecord;
  readonly steps: readonly Step[];
  /** Number of steps of this group that completed (done or skipped). */
  readonly completed: number;
  readonly status: 'pending' | 'running' | 'done' | 'failed' | 'rolled-back';
  /** Each written function's driver and override when the run was planned: what a rollback restores. */
  readonly before?: Readonly<Record<string, FunctionState>>;
}

export interface Journal {
  readonly version: 1;
  readonly id: string;
  readonly operation: 'prepare' | 'release';
  readonly pid: number;
  readonly startedAt: number;
  readonly preamble: { readonly steps: readonly Step[]; readonly completed: number };
  readonly groups: readonly JournalGroup[];
}

/** Where the journal and the per-group records live: a directory on the host, or memory in tests. */
export interface StateStore {
  readJournal(): Promise<Journal | undefined>;
  writeJournal(journal: Journal): Promise<void>;
  clearJournal(): Promise<void>;
  readRecords(): Promise<Map<number, GroupRecord>>;
  writeRecords(records: ReadonlyMap<number, GroupRecord>): Promise<void>;
  /** Exclusive lock for one run; rejects with JournalError when another live process holds it. */
  lock(): Promise<() => Promise<void>>;
}

export class MemoryStateStore implements StateStore {
  journal: Journal | undefined;
  records = new Map<number, GroupRecord>();
  private locked = false;
  /** Every journal write, for tests that assert journaling order. */
  readonly journalWrites: Journal[] = [];

  async readJournal(): Promise<Journal | undefined> {
    return this.journal && structuredClone(this.journal);
  }
  async writeJournal(journal: Journal): Promise<void> {
    this.journal = structuredClone(journal);
    this.journalWrites.push(this.journal);
  }
  async clearJournal(): Promise<void> {
    this.journal = undefined;
  }
  async readRecords(): Promise<Map<number, GroupRecord>> {
    return new Map(structuredClone([...this.records]));
  }
  async writeRecords(records: ReadonlyMap<number, GroupRecord>): Promise<void> {
    this.records = new Map(structuredClone([...records]));
  }
  async lock(): Promise<() => Promise<void>> {
    if (this.locked) {
      const { JournalError } = await import('../core/errors.js');
      throw new JournalError('another handoff run holds the state lock');
    }
    this.locked = true;
    return async () => {
      this.locked = false;
    };
  }
}
