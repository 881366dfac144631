import type { Clock } from '../core/clock.js';
import { HandoffError, HungWriteError, InternalError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { PciAddress } from '../core/pci-address.js';
import type { HostSnapshot, PciFunction } from '../host/model.js';
import type { HandoffRecorder } from '../metrics/recorders.js';
import type { HostPort } from '../sysfs/port.js';
import type { Journal, JournalGroup, StateStore } from '../state/journal.js';
import { functionIndex, VFIO_DRIVER } from './group.js';
import { othersKeepVfioNode, releaseSteps, reprepareSteps, restoreSteps, type GroupRecord, type Plan } from './plan.js';
import { StepRunner } from './step-runner.js';
import { describeStep, stepTarget, type Step } from './steps.js';

export interface StepOutcome {
  readonly step: Step;
  readonly outcome: 'done' | 'skipped' | 'failed';
  readonly note?: string;
  readonly error?: { readonly code: string; readonly message: string };
  /** The step's write did not return within the write timeout (the kernel may still be stuck in it). */
  readonly hung?: boolean;
}

/**
 * `rolled_back`: a step failed and the group is back where it was. `rollback_failed`: a step failed
 * and undoing it failed too (or needed a device with a hung write) — the group may be half-bound,
 * `rollbackError` says how it stands, and the journal is kept for the next run.
 */
export type GroupOutcomeKind = 'prepared' | 'released' | 'already' | 'failed' | 'rolled_back' | 'rollback_failed' | 'resumed';

export interface GroupOutcome {
  readonly group: number;
  readonly gpus: readonly PciAddress[];
  readonly operation: 'prepare' | 'release';
  readonly outcome: GroupOutcomeKind;
  readonly steps: readonly StepOutcome[];
  readonly rollback?: readonly StepOutcome[];
  readonly error?: { readonly code: string; readonly message: string };
  /** For `rollback_failed`: what could not be undone and the group's functions as they are now. */
  readonly rollbackError?: { readonly code: 'ROLLBACK_FAILED'; readonly message: string };
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
  /** Called as each step starts and ends, so a front end can print progress while the run goes on. */
  readonly onStep?: (event: StepEvent) => void;
  /**
   * Targets (device address, console, module) that had a write hang in this process. Shared across
   * runs (the agent keeps one engine): nothing is written to them again, because the kernel may
   * still be stuck in the first write and a second would only hang behind it.
   */
  readonly hung?: Set<string>;
}

export type StepEvent =
  | { readonly phase: 'start'; readonly group: number | undefined; readonly step: Step; readonly rollback: boolean }
  | { readonly phase: 'end'; readonly group: number | undefined; readonly step: Step; readonly rollback: boolean; readonly outcome: StepOutcome };

/**
 * Executes plans against the host with a journal: the journal is written before the first write and
 * after every step, so a crash at any point is resumed (or, if resuming fails, rolled back) by
 * `recover()` on the next run. A failing group is rolled back at once; other groups carry on.
 */
export class HandoffExecutor {
  private readonly runner: StepRunner;
  private readonly hung: Set<string>;
  private stepCount = 0;
  /** Outcomes of the host-wide steps (loading vfio-pci) of the last run, for reports. */
  preamble: StepOutcome[] = [];

  constructor(private readonly deps: ExecutorDeps) {
    this.hung = deps.hung ?? new Set();
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
      const res = await this.runStep(step, signal, undefined, false);
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
    // A group left `failed` (rollback incomplete, or a hung write that may still land) keeps it too.
    if (hasWork && !journal.groups.some((g) => g.status === 'failed')) await this.deps.store.clearJournal();
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
        const problem = await this.rollbackProblem(g, rollback);
        if (!problem) {
          const groups: JournalGroup[] = journal.groups.map((x, i) => {
            if (i !== gi) return x;
            const { hung: _settled, ...rest } = x;
            return { ...rest, status: 'rolled-back' as const };
          });
          journal = { ...journal, groups };
          await this.deps.store.writeJournal(journal);
        }
        outcomes.push({
          group: g.group,
          gpus: g.record.gpus,
          operation: journal.operation,
          outcome: problem ? 'rollback_failed' : 'rolled_back',
          steps: [],
          rollback,
          ...(problem ? { rollbackError: { code: 'ROLLBACK_FAILED' as const, message: problem } } : {}),
        });
      }
    }
    // A recovery that could not finish keeps the journal: it is the only record of what to undo.
    if (!journal.groups.some((g) => g.status === 'failed')) await this.deps.store.clearJournal();
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
      const res = await this.runStep(g.steps[i]!, signal, g.group, false);
      results.push(res);
      if (res.outcome === 'failed') {
        const hung = res.hung ? { what: res.error?.message ?? '', target: stepTarget(res.step), at: this.deps.clock.now() } : g.hung;
        await update({ status: 'failed', completed: i, ...(hung ? { hung } : {}) });
        const rollback = await this.rollback(operation, journal.groups[gi]!);
        const problem = await this.rollbackProblem(journal.groups[gi]!, rollback);
        // The journal keeps `failed` while the group may still change under us (a hung write) or is half-bound.
        if (!problem && !hung) await update({ status: 'rolled-back' });
        return {
          group: g.group,
          gpus: g.record.gpus,
          operation,
          outcome: problem ? 'rollback_failed' : 'rolled_back',
          steps: results,
          rollback,
          error: res.error,
          ...(problem ? { rollbackError: { code: 'ROLLBACK_FAILED' as const, message: problem } } : {}),
        };
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
    // The group's other functions: a foreign one its owner gave to vfio-pci keeps /dev/vfio/<group>.
    const steps = rollbackSteps(operation, g, fns, othersKeepVfioNode(snapshot, g.group, new Set(known)));
    const out: StepOutcome[] = [];
    for (const step of steps) out.push(await this.runStep(step, undefined, g.group, true));
    if (operation === 'prepare' && out.every((s) => s.outcome !== 'failed')) await this.dropRecordIfOnlyThisRun(g.record);
    this.deps.logger.warn({ group: g.group, operation, failed: out.filter((s) => s.outcome === 'failed').length }, 'rolled back group');
    return out;
  }

  /**
   * Undefined when the rollback put the group back; otherwise the sentence for `rollback_failed`:
   * the steps that failed and every function's driver as the host shows it now.
   */
  private async rollbackProblem(g: JournalGroup, rollback: readonly StepOutcome[]): Promise<string | undefined> {
    const failed = rollback.filter((s) => s.outcome === 'failed');
    if (failed.length === 0) return undefined;
    let state: string;
    try {
      const idx = functionIndex(await this.deps.discover());
      state = Object.keys(g.record.originalDrivers)
        .map((a) => {
          const fn = idx.get(a as PciAddress);
          if (!fn) return `${a} is gone`;
          return `${a} on ${fn.driver ?? 'no driver'}${fn.driverOverride ? ` (driver_override ${fn.driverOverride})` : ''}`;
        })
        .join(', ');
    } catch (err) {
      state = `unknown (${errorInfo(err).message})`;
    }
    return (
      `rollback of group ${g.group} did not complete — ${failed.map((s) => `${describeStep(s.step)}: ${s.error?.message ?? 'failed'}`).join('; ')}. ` +
      `The group is not as it was before (it may be half-bound): ${state}. The journal is kept; the next prepare/release retries the rollback.`
    );
  }

  private async runStep(step: Step, signal: AbortSignal | undefined, group: number | undefined, rollback: boolean): Promise<StepOutcome> {
    this.deps.onStep?.({ phase: 'start', group, step, rollback });
    const res = await this.execute(step, signal);
    this.deps.onStep?.({ phase: 'end', group, step, rollback, outcome: res });
    return res;
  }

  private async execute(step: Step, signal: AbortSignal | undefined): Promise<StepOutcome> {
    const target = stepTarget(step);
    if (step.kind !== 'verify-group' && this.hung.has(target)) {
      // No retries on a device whose write hung: a second write would queue behind the first in the kernel.
      this.deps.recorder.stepCompleted(step.kind, 'failed');
      return { step, outcome: 'failed', error: { code: 'TIMEOUT', message: `not writing to ${target}: an earlier write to it did not return (the kernel may still be stuck in it)` } };
    }
    try {
      const res = await this.runner.run(step, signal);
      this.deps.recorder.stepCompleted(step.kind, res.outcome);
      this.deps.logger.debug({ step, outcome: res.outcome, note: res.note }, 'step');
      return res.note ? { step, outcome: res.outcome, note: res.note } : { step, outcome: res.outcome };
    } catch (err) {
      this.deps.recorder.stepCompleted(step.kind, 'failed');
      this.deps.logger.error({ step, err: errorInfo(err) }, 'step failed');
      if (err instanceof HungWriteError) {
        this.hung.add(err.target);
        return { step, outcome: 'failed', error: errorInfo(err), hung: true };
      }
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
      const result =
        o.outcome === 'failed' || o.outcome === 'rollback_failed' ? 'failure' : o.outcome === 'rolled_back' ? 'rolled_back' : o.outcome === 'already' ? 'noop' : 'success';
      this.deps.recorder.handoffFinished(operation, result, o.error?.code ?? 'none', seconds);
    }
  }
}

/**
 * What puts a failed group back: the state every function had when the run was planned (`before`),
 * so neither a prepare nor a release rollback changes anything that was there before the run.
 * Journals written without `before` fall back to the record (prepare) or back to vfio-pci (release).
 */
function rollbackSteps(operation: 'prepare' | 'release', g: JournalGroup, fns: readonly PciFunction[], othersKeepNode: boolean): Step[] {
  if (!g.before) return operation === 'prepare' ? releaseSteps(g.group, fns, g.record, othersKeepNode) : reprepareSteps(g.group, fns);
  const before = g.before;
  const steps = restoreSteps(fns, before);
  const onVfio = fns.filter((f) => before[f.address]?.driver === VFIO_DRIVER).map((f) => f.address);
  const offVfio = fns.filter((f) => before[f.address] !== undefined && before[f.address]!.driver !== VFIO_DRIVER).map((f) => f.address);
  if (operation === 'release' && onVfio.length > 0) {
    steps.push({ kind: 'verify-group', group: g.group, expect: 'vfio', members: onVfio });
  } else {
    const nodeStays = onVfio.length > 0 || othersKeepNode;
    steps.push({ kind: 'verify-group', group: g.group, expect: 'host', members: offVfio, ...(nodeStays ? { nodeGone: false as const } : {}) });
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
