import type { Clock } from '../core/clock.js';
import { HandoffError, InternalError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { PciAddress } from '../core/pci-address.js';
import type { HostSnapshot, PciFunction } from '../host/model.js';
import type { HandoffRecorder } from '../metrics/recorders.js';
import type { HostPort } from '../sysfs/port.js';
import type { Journal, JournalGroup, StateStore } from '../state/journal.js';
import { functionIndex, VFIO_DRIVER } from './group.js';
import { releaseSteps, reprepareSteps, restoreSteps, type GroupRecord, type Plan } from './plan.js';
import { StepRunner } from './step-runner.js';
import type { Step } from './steps.js';

export interface StepOutcome {
  readonly step: Step;
  readonly outcome: 'done' | 'skipped' | 'failed';
  readonly note?: string;
  readonly error?: { readonly code: string; readonly message: string };
}

export type GroupOutcomeKind = 'prepared' | 'released' | 'already' | 'failed' | 'rolled_back' | 'resumed';

export interface GroupOutcome {
  readonly group: number;
  readonly gpus: readonly PciAddress[];
  readonly operation: 'prepare' | 'release';
  readonly outcome: GroupOutcomeKind;
  readonly steps: readonly StepOutcome[];
  readonly rollback?: readonly StepOutcome[];
  readonly error?: { readonly code: string; readonly message: string };
}

export interface ExecutorDeps {
  readonly host: HostPort;
  readonly store: StateStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly recorder: HandoffRecorder;
  /** Re-reads the host; rollback plans are made from what is there now, not from what was planned. */
  readonly discover: () => Promise<HostSnapshot>;
  readonly writeTimeoutMs?: number;
  readonly verifyTimeoutMs?: number;
  /** Test hook: called after step `n` (1-based over the run) has been executed and journaled. */
  readonly afterStep?: (n: number) => void;
}

/**
 * Executes plans against the host with a journal: the journal is written before the first write and
 * after every step, so a crash at any point is resumed (or, if resuming fails, rolled back) by
 * `recover()` on the next run. A failing group is rolled back at once; other groups carry on.
 */
export class HandoffExecutor {
  private readonly runner: StepRunner;
  private stepCount = 0;
  /** Outcomes of the host-wide steps (loading vfio-pci) of the last run, for reports. */
  preamble: StepOutcome[] = [];

  constructor(private readonly deps: ExecutorDeps) {
    this.runner = new StepRunner({
      host: deps.host,
      clock: deps.clock,
      writeTimeoutMs: deps.writeTimeoutMs ?? 10_000,
      verifyTimeoutMs: deps.verifyTimeoutMs ?? 5_000,
    });
  }

  async run(plan: Plan, signal?: AbortSignal): Promise<GroupOutcome[]> {
    const started = this.deps.clock.now();
    let journal: Journal = {
      version: 1,
      id: `${plan.operation}-${started}-${process.pid}`,
      operation: plan.operation,
      pid: process.pid,
      startedAt: started,
      preamble: { steps: plan.preamble, completed: 0 },
      groups: plan.groups.map((g) => ({
        group: g.group,
        record: g.record,
        steps: g.steps,
        completed: 0,
        status: 'pending' as const,
        ...(g.before ? { before: g.before } : {}),
      })),
    };
    const hasWork = plan.preamble.length > 0 || plan.groups.some((g) => g.steps.length > 0);
    if (hasWork) await this.deps.store.writeJournal(journal);

    const outcomes: GroupOutcome[] = [];
    this.preamble = [];
    for (let i = 0; i < plan.preamble.length; i++) {
      const step = plan.preamble[i]!;
      const res = await this.runStep(step, signal);
      this.preamble.push(res);
      if (res.outcome === 'failed') {
        // Nothing of any group has changed yet: fail every group without rollback.
        for (const g of plan.groups) {
          outcomes.push({ group: g.group, gpus: g.gpus, operation: plan.operation, outcome: 'failed', steps: [res], error: res.error });
        }
        if (hasWork) await this.deps.store.clearJournal();
        this.finish(plan.operation, outcomes, started);
        return outcomes;
      }
      journal = { ...journal, preamble: { ...journal.preamble, completed: i + 1 } };
      await this.deps.store.writeJournal(journal);
      this.afterStep();
    }
    for (let gi = 0; gi < plan.groups.length; gi++) {
      const outcome = await this.runGroup(journal, gi, 0, signal, (j) => (journal = j));
      outcomes.push(outcome);
    }
    // Only a run that got here is complete; an exception escaping above leaves the journal for recover().
    if (hasWork) await this.deps.store.clearJournal();
    this.finish(plan.operation, outcomes, started);
    return outcomes;
  }

  /**
   * Finishes what a crashed run left in the journal: groups that were running are resumed from their
   * last journaled step (steps are idempotent); if resuming fails they are rolled back. Groups that had
   * not started are left alone (nothing was changed), groups caught mid-rollback are rolled back again.
   */
  async recover(signal?: AbortSignal): Promise<GroupOutcome[]> {
    let journal = await this.deps.store.readJournal();
    if (!journal) return [];
    this.deps.logger.warn({ journal: journal.id, operation: journal.operation }, 'recovering an unfinished handoff');
    const outcomes: GroupOutcome[] = [];
    const started = this.deps.clock.now();
    for (let gi = 0; gi < journal.groups.length; gi++) {
      const g = journal.groups[gi]!;
      if (g.status === 'running') {
        const res = await this.runGroup(journal, gi, g.completed, signal, (j) => (journal = j));
        outcomes.push({ ...res, outcome: res.outcome === 'prepared' || res.outcome === 'released' ? 'resumed' : res.outcome });
      } else if (g.status === 'failed') {
        const rollback = await this.rollback(journal.operation, g);
        outcomes.push({ group: g.group, gpus: g.record.gpus, operation: journal.operation, outcome: 'rolled_back', steps: [], rollback });
      }
    }
    await this.deps.store.clearJournal();
    this.finish(journal.operation, outcomes, started);
    return outcomes;
  }

  private async runGroup(
    journal: Journal,
    gi: number,
    from: number,
    signal: AbortSignal | undefined,
    setJournal: (j: Journal) => void,
  ): Promise<GroupOutcome> {
    const g = journal.groups[gi]!;
    const operation = journal.operation;
    const update = async (patch: Partial<JournalGroup>): Promise<void> => {
      const groups = journal.groups.map((x, i) => (i === gi ? { ...x, ...patch } : x));
      journal = { ...journal, groups };
      setJournal(journal);
      await this.deps.store.writeJournal(journal);
    };
    if (g.steps.length === 0) {
      return { group: g.group, gpus: g.record.gpus, operation, outcome: 'already', steps: [] };
    }
    if (operation === 'prepare') await this.saveRecord(g.record);
    await update({ status: 'running', completed: from });
    const results: StepOutcome[] = [];
    for (let i = from; i < g.steps.length; i++) {
      const res = await this.runStep(g.steps[i]!, signal);
      results.push(res);
      if (res.outcome === 'failed') {
        await update({ status: 'failed', completed: i });
        const rollback = await this.rollback(operation, journal.groups[gi]!);
        await update({ status: 'rolled-back' });
        return { group: g.group, gpus: g.record.gpus, operation, outcome: 'rolled_back', steps: results, rollback, error: res.error };
      }
      await update({ completed: i + 1 });
      this.afterStep();
    }
    await update({ status: 'done' });
    if (operation === 'release') await this.dropRecord(g.group);
    // Verification steps read only: a run whose only "done" step is a verify changed nothing.
    const changed = results.some((r) => r.outcome === 'done' && r.step.kind !== 'verify-group');
    return {
      group: g.group,
      gpus: g.record.gpus,
      operation,
      outcome: changed ? (operation === 'prepare' ? 'prepared' : 'released') : 'already',
      steps: results,
    };
  }

  /**
   * Puts a group back into a consistent state from whatever the host shows now: a failed prepare goes
   * back to the host drivers (using the recorded originals), a failed release goes back to vfio-pci.
   * Best effort: every step is tried even if an earlier one fails, and failures are reported.
   */
  private async rollback(operation: 'prepare' | 'release', g: JournalGroup): Promise<StepOutcome[]> {
    let snapshot: HostSnapshot;
    try {
      snapshot = await this.deps.discover();
    } catch (err) {
      return [{ step: { kind: 'verify-group', group: g.group, expect: 'host', members: [] }, outcome: 'failed', error: errorInfo(err) }];
    }
    const idx = functionIndex(snapshot);
    const known = g.before ? Object.keys(g.before) : Object.keys(g.record.originalDrivers);
    const fns = known.map((a) => idx.get(a as PciAddress)).filter((f): f is NonNullable<typeof f> => f !== undefined);
    const steps = rollbackSteps(operation, g, fns);
    const out: StepOutcome[] = [];
    for (const step of steps) out.push(await this.runStep(step));
    if (operation === 'prepare' && out.every((s) => s.outcome !== 'failed')) await this.dropRecordIfOnlyThisRun(g.record);
    this.deps.logger.warn({ group: g.group, operation, failed: out.filter((s) => s.outcome === 'failed').length }, 'rolled back group');
    return out;
  }

  private async runStep(step: Step, signal?: AbortSignal): Promise<StepOutcome> {
    try {
      const res = await this.runner.run(step, signal);
      this.deps.recorder.stepCompleted(step.kind, res.outcome);
      this.deps.logger.debug({ step, outcome: res.outcome, note: res.note }, 'step');
      return res.note ? { step, outcome: res.outcome, note: res.note } : { step, outcome: res.outcome };
    } catch (err) {
      this.deps.recorder.stepCompleted(step.kind, 'failed');
      this.deps.logger.error({ step, err: errorInfo(err) }, 'step failed');
      return { step, outcome: 'failed', error: errorInfo(err) };
    }
  }

  private afterStep(): void {
    this.stepCount++;
    this.deps.afterStep?.(this.stepCount);
  }

  private async saveRecord(record: GroupRecord): Promise<void> {
    const records = await this.deps.store.readRecords();
    const existing = records.get(record.group);
    // Originals from an earlier prepare of ours win (a function we moved then is on vfio-pci now, but
    // its home is what that record says); anything else is recorded exactly as it is — a function
    // already on vfio-pci before us is recorded as vfio-pci, so release leaves it where it was.
    const originalDrivers: Record<string, string | null> = {};
    const originalOverrides: Record<string, string | null> = {};
    for (const [addr, drv] of Object.entries(record.originalDrivers)) {
      const earlier = existing?.originalDrivers[addr];
      originalDrivers[addr] = earlier !== undefined ? earlier : drv;
      originalOverrides[addr] =
        earlier !== undefined ? (existing?.originalOverrides?.[addr] ?? null) : (record.originalOverrides?.[addr] ?? null);
    }
    records.set(record.group, {
      ...record,
      originalDrivers,
      originalOverrides,
      framebuffers: dedupe([...(existing?.framebuffers ?? []), ...record.framebuffers], (f) => f.device),
      vtconsoles: [...new Set([...(existing?.vtconsoles ?? []), ...record.vtconsoles])],
    });
    await this.deps.store.writeRecords(records);
  }

  /**
   * After a prepare rolled back: the stored record goes only if it is this run's own (an earlier
   * prepare's record, merged into it, still describes functions that run took and must give back).
   */
  private async dropRecordIfOnlyThisRun(record: GroupRecord): Promise<void> {
    const records = await this.deps.store.readRecords();
    const stored = records.get(record.group);
    if (!stored) return;
    const same = Object.entries(stored.originalDrivers).every(([a, d]) => record.originalDrivers[a] === d) &&
      Object.entries(stored.originalOverrides ?? {}).every(([a, o]) => (record.originalOverrides?.[a] ?? null) === o);
    if (same) await this.dropRecord(record.group);
  }

  private async dropRecord(group: number): Promise<void> {
    const records = await this.deps.store.readRecords();
    if (records.delete(group)) await this.deps.store.writeRecords(records);
  }

  private finish(operation: 'prepare' | 'release', outcomes: readonly GroupOutcome[], started: number): void {
    const seconds = (this.deps.clock.now() - started) / 1000;
    for (const o of outcomes) {
      const result = o.outcome === 'failed' ? 'failure' : o.outcome === 'rolled_back' ? 'rolled_back' : o.outcome === 'already' ? 'noop' : 'success';
      this.deps.recorder.handoffFinished(operation, result, o.error?.code ?? 'none', seconds);
    }
  }
}

/**
 * What puts a failed group back: the state every function had when the run was planned (`before`),
 * so neither a prepare nor a release rollback changes anything that was there before the run.
 * Journals written without `before` fall back to the record (prepare) or back to vfio-pci (release).
 */
function rollbackSteps(operation: 'prepare' | 'release', g: JournalGroup, fns: readonly PciFunction[]): Step[] {
  if (!g.before) return operation === 'prepare' ? releaseSteps(g.group, fns, g.record) : reprepareSteps(g.group, fns);
  const before = g.before;
  const steps = restoreSteps(fns, before);
  const onVfio = fns.filter((f) => before[f.address]?.driver === VFIO_DRIVER).map((f) => f.address);
  const offVfio = fns.filter((f) => before[f.address] !== undefined && before[f.address]!.driver !== VFIO_DRIVER).map((f) => f.address);
  if (operation === 'release' && onVfio.length > 0) {
    steps.push({ kind: 'verify-group', group: g.group, expect: 'vfio', members: onVfio });
  } else {
    steps.push({ kind: 'verify-group', group: g.group, expect: 'host', members: offVfio, ...(onVfio.length > 0 ? { nodeGone: false as const } : {}) });
  }
  if (operation === 'prepare') {
    for (const fb of g.record.framebuffers) steps.push({ kind: 'bind-framebuffer', device: fb.device, driver: fb.driver });
    for (const vt of g.record.vtconsoles) steps.push({ kind: 'bind-vtconsole', vtconsole: vt });
  }
  return steps;
}

export function errorInfo(err: unknown): { code: string; message: string } {
  if (err instanceof HandoffError) return { code: err.code, message: err.message };
  if (err instanceof Error) return { code: new InternalError(err.message).code, message: err.message };
  return { code: 'INTERNAL', message: String(err) };
}

function dedupe<T>(items: readonly T[], key: (t: T) => string): T[] {
  const seen = new Map<string, T>();
  for (const i of items) if (!seen.has(key(i))) seen.set(key(i), i);
  return [...seen.values()];
}
