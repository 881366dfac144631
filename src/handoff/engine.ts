import type { Clock } from '../core/clock.js';
import { BlockedError, InUseError, RollbackFailedError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { PciAddress } from '../core/pci-address.js';
import { deviceFilesOf, findDeviceFileUsers } from '../host/device-users.js';
import { discoverHost } from '../host/discover.js';
import type { Gpu, HostSnapshot } from '../host/model.js';
import { noopHandoffRecorder, type HandoffRecorder } from '../metrics/recorders.js';
import type { HostPort } from '../sysfs/port.js';
import type { StateStore } from '../state/journal.js';
import { HandoffExecutor, type ExecutorDeps, type GroupOutcome, type StepOutcome } from './executor.js';
import { endpoints, VFIO_DRIVER } from './group.js';
import { planPrepare, planRelease, type GroupRecord, type Plan } from './plan.js';
import { resolveSelectors, type GpuSelector } from './select.js';
import { assessGpu, type Assessment, type DeviceUser } from './verdict.js';

export type Selection = { readonly all: true } | { readonly all: false; readonly selectors: readonly GpuSelector[] };

export interface EngineDeps {
  readonly host: HostPort;
  readonly store: StateStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly recorder?: HandoffRecorder;
  /** Look for host processes holding GPU device files (procfs scan). Off in the simulated demo. */
  readonly scanDeviceUsers?: boolean;
  readonly writeTimeoutMs?: number;
  readonly verifyTimeoutMs?: number;
  readonly afterStep?: ExecutorDeps['afterStep'];
  /** Progress: called as each host step starts and ends (the CLI prints it while the run goes on). */
  readonly onStep?: ExecutorDeps['onStep'];
}

export interface InspectReport {
  readonly snapshot: HostSnapshot;
  readonly assessments: readonly Assessment[];
  /** The plan prepare would run for each preparable GPU (one per GPU). */
  readonly plans: ReadonlyMap<PciAddress, Plan>;
}

export interface HandoffReport {
  readonly operation: 'prepare' | 'release';
  readonly recovered: readonly GroupOutcome[];
  readonly assessments: readonly Assessment[];
  /** GPUs left out of `--all` (blocked ones on prepare), with why. */
  readonly skipped: readonly Assessment[];
  readonly plan: Plan;
  /** Host-wide steps that ran before the groups (loading vfio-pci). */
  readonly preamble: readonly StepOutcome[];
  readonly outcomes: readonly GroupOutcome[];
  readonly dryRun: boolean;
}

/**
 * The engine's use cases: inspect (read-only), prepare and release. It holds the state lock for the
 * whole of a change, recovers an unfinished journal first, and refuses — before writing anything —
 * when the verdict forbids the change.
 */
export class HandoffEngine {
  private readonly recorder: HandoffRecorder;
  /** Devices/consoles/modules whose write hung in this process: never written again by this engine. */
  private readonly hung = new Set<string>();

  constructor(private readonly deps: EngineDeps) {
    this.recorder = deps.recorder ?? noopHandoffRecorder;
  }

  discover(): Promise<HostSnapshot> {
    return discoverHost(this.deps.host);
  }

  async inspect(opts: { allowBootGpu: boolean }): Promise<InspectReport> {
    const snapshot = await this.discover();
    const users = await this.deviceUsers(snapshot, snapshot.gpus);
    const assessments = snapshot.gpus.map((g) => assessGpu(snapshot, g, { allowBootGpu: opts.allowBootGpu, users }));
    const plans = new Map<PciAddress, Plan>();
    for (const a of assessments) if (a.verdict === 'preparable') plans.set(a.gpu.fn.address, planPrepare(snapshot, [a]));
    return { snapshot, assessments, plans };
  }

  async prepare(selection: Selection, opts: { allowBootGpu: boolean; dryRun?: boolean; signal?: AbortSignal }): Promise<HandoffReport> {
    return this.locked(opts.dryRun ?? false, async (executor) => {
      const recovered = opts.dryRun ? [] : refuseAfterFailedRecovery(await executor.recover(opts.signal));
      const snapshot = await this.discover();
      const gpus = selection.all ? snapshot.gpus : resolveSelectors(snapshot, selection.selectors);
      const users = await this.deviceUsers(snapshot, gpus);
      const assessed = gpus.map((g) => assessGpu(snapshot, g, { allowBootGpu: opts.allowBootGpu, users }));
      const blocked = assessed.filter((a) => a.verdict === 'blocked');
      if (!selection.all && blocked.length > 0) {
        const reasons = blocked.flatMap((a) => a.reasons);
        throw new BlockedError(
          `refusing to prepare: ${blocked.map((a) => `${a.gpu.fn.address}: ${a.reasons.map((r) => r.code).join(', ')}`).join('; ')}`,
          reasons,
        );
      }
      const chosen = assessed.filter((a) => a.verdict !== 'blocked');
      const plan = planPrepare(snapshot, chosen);
      const outcomes = opts.dryRun ? [] : await executor.run(plan, opts.signal);
      return { operation: 'prepare', recovered, assessments: chosen, skipped: blocked, plan, preamble: executor.preamble, outcomes, dryRun: opts.dryRun ?? false };
    });
  }

  async release(selection: Selection, opts: { dryRun?: boolean; force?: boolean; signal?: AbortSignal } = {}): Promise<HandoffReport> {
    return this.locked(opts.dryRun ?? false, async (executor) => {
      const recovered = opts.dryRun ? [] : refuseAfterFailedRecovery(await executor.recover(opts.signal));
      const snapshot = await this.discover();
      const records = await this.deps.store.readRecords();
      const gpus = selection.all
        ? snapshot.gpus.filter((g) => isOnVfio(snapshot, g) || (g.fn.iommuGroup !== undefined && records.has(g.fn.iommuGroup)))
        : resolveSelectors(snapshot, selection.selectors);
      const assessed = gpus.map((g) => assessGpu(snapshot, g, { allowBootGpu: true }));
      if (!opts.force) {
        // A VMM holding /dev/vfio/<group> means a running VM: unbinding under it would crash the guest.
        const users = (await this.deviceUsers(snapshot, gpus, true)).filter((u) => u.path.startsWith('/dev/vfio/'));
        if (users.length > 0) {
          throw new InUseError(
            `refusing to release: ${users.map((u) => `${u.path} is open by pid ${u.pid} (${u.command})`).join('; ')}`,
          );
        }
      }
      const plan = planRelease(snapshot, assessed, records);
      const outcomes = opts.dryRun ? [] : await executor.run(plan, opts.signal);
      return { operation: 'release', recovered, assessments: assessed, skipped: [], plan, preamble: executor.preamble, outcomes, dryRun: opts.dryRun ?? false };
    });
  }

  /** Groups vfio-handoff prepared (and may therefore release). */
  records(): Promise<Map<number, GroupRecord>> {
    return this.deps.store.readRecords();
  }

  /** Finishes an unfinished journal, if any (the agent calls this at start-up). */
  async recover(signal?: AbortSignal): Promise<readonly GroupOutcome[]> {
    return this.locked(false, (executor) => executor.recover(signal));
  }

  private async locked<T>(readOnly: boolean, fn: (executor: HandoffExecutor) => Promise<T>): Promise<T> {
    const executor = new HandoffExecutor({
      host: this.deps.host,
      store: this.deps.store,
      clock: this.deps.clock,
      logger: this.deps.logger,
      recorder: this.recorder,
      discover: () => this.discover(),
      writeTimeoutMs: this.deps.writeTimeoutMs,
      verifyTimeoutMs: this.deps.verifyTimeoutMs,
      afterStep: this.deps.afterStep,
      onStep: this.deps.onStep,
      hung: this.hung,
    });
    if (readOnly) return fn(executor);
    const unlock = await this.deps.store.lock();
    try {
      // Both state files are validated before anything is written — recovery, the preamble's module loads and
      // the groups' steps alike: a file of the wrong shape must refuse the run (exit 7) with the host untouched.
      await this.deps.store.readJournal();
      await this.deps.store.readRecords();
      this.deps.host.warmUp?.();
      return await fn(executor);
    } finally {
      await unlock();
    }
  }

  private async deviceUsers(snapshot: HostSnapshot, gpus: readonly Gpu[], vfioOnly = false): Promise<DeviceUser[]> {
    if (!this.deps.scanDeviceUsers) return [];
    const wanted = new Map<PciAddress, string[]>();
    for (const g of gpus) {
      const group = g.fn.iommuGroup;
      const members = snapshot.functions.filter((f) => (group !== undefined ? f.iommuGroup === group : f.address === g.fn.address));
      for (const fn of members) {
        if (fn.isBridge) continue;
        if (vfioOnly && fn.driver !== VFIO_DRIVER) continue;
        if (!vfioOnly && fn.driver === VFIO_DRIVER) continue;
        wanted.set(fn.address, await deviceFilesOf(this.deps.host, fn.address, vfioOnly ? group : undefined));
      }
    }
    return findDeviceFileUsers(this.deps.host, wanted);
  }
}

/**
 * A journal whose rollback could not finish must not be overwritten by a new run's journal (it is the
 * only record of what to undo): the run stops before changing anything else.
 */
function refuseAfterFailedRecovery(recovered: readonly GroupOutcome[]): readonly GroupOutcome[] {
  const failed = recovered.filter((o) => o.outcome === 'rollback_failed');
  if (failed.length > 0) {
    throw new RollbackFailedError(
      `recovering the unfinished handoff failed, so nothing else was done: ${failed.map((o) => o.rollbackError?.message ?? `group ${o.group}`).join(' ')}`,
    );
  }
  return recovered;
}

function isOnVfio(snapshot: HostSnapshot, gpu: Gpu): boolean {
  const a = assessGpu(snapshot, gpu, { allowBootGpu: true });
  return endpoints(a.members).some((m) => m.fn.driver === VFIO_DRIVER || m.fn.driverOverride === VFIO_DRIVER);
}
