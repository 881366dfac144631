import type { Clock } from '../core/clock.js';
import { BlockedError, InUseError, RollbackFailedError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { PciAddress } from '../core/pci-address.js';
import { deviceFilesOf, findDeviceFileUsers } from '../host/device-users.js';
import { discoverHost } from '../host/discover.js';
import { functionAt, gpuAt } from '../host/lookup.js';
import type { Gpu, HostSnapshot } from '../host/model.js';
import { onVfio } from '../host/readiness.js';
import { noopHandoffRecorder, type HandoffRecorder } from '../metrics/recorders.js';
import type { HostPort } from '../sysfs/port.js';
import type { StateStore } from '../state/journal.js';
import { HandoffExecutor, type ExecutorDeps, type GroupOutcome, type GroupOutcomeKind, type StepOutcome } from './executor.js';
import { VFIO_DRIVER } from './group.js';
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

/** Where a GPU should be: given to VFIO (prepare) or back on the host (release). */
export type Want = 'vfio' | 'host';

/** One GPU's wanted state for `apply`. */
export interface Intent {
  readonly address: PciAddress;
  readonly want: Want;
  /** For `want: 'vfio'`: whether the boot GPU (firmware console) may be taken. Release ignores it. */
  readonly allowBootGpu?: boolean;
}

/**
 * What a caller planned its intents from: `apply` reuses it under the lock instead of discovering
 * again, unless recovery ran or the records changed since (another vfio-handoff run finished in
 * between — every run that changes the host changes the records or leaves a journal).
 */
export interface ApplyBasis {
  readonly snapshot: HostSnapshot;
  readonly records: ReadonlyMap<number, GroupRecord>;
}

/**
 * One GPU's result. Group outcomes (executor.ts) apply to every GPU of the group; besides them:
 * `blocked` — the verdict forbids preparing it now (error code BLOCKED, nothing written), or a `host`
 *   intent's group is wanted on VFIO by another intent of the same call (GROUP_WANTED_ON_VFIO, nothing written);
 * `in_use` — a process holds its group's /dev/vfio node, so release left it (IN_USE, nothing written);
 * `not_found` — no GPU at that address on the host (NOT_FOUND).
 */
export type GpuOutcomeKind = GroupOutcomeKind | 'blocked' | 'in_use' | 'not_found';

export interface GpuOutcome {
  readonly address: PciAddress;
  readonly want: Want;
  readonly outcome: GpuOutcomeKind;
  readonly error?: { readonly code: string; readonly message: string };
  readonly rollbackError?: { readonly code: 'ROLLBACK_FAILED'; readonly message: string };
}

export interface ApplyOptions {
  readonly basis?: ApplyBasis;
  readonly dryRun?: boolean;
  readonly signal?: AbortSignal;
  /**
   * What a blocked `vfio` intent does: `report` (default) gives it outcome `blocked` and goes on with
   * the others; `refuse` throws BlockedError for the whole call before anything is written; `skip`
   * leaves it out, listed in `prepare.skipped` (`prepare --all`).
   */
  readonly blocked?: 'report' | 'refuse' | 'skip';
  /**
   * What a `host` intent whose /dev/vfio node a process holds (a running VM) does: `report` (default)
   * gives it outcome `in_use`; `refuse` throws InUseError before anything is written; `ignore`
   * releases it anyway (`release --force`).
   */
  readonly inUse?: 'report' | 'refuse' | 'ignore';
  /** Discover the host again after a run that changed it, for `after` (default true). */
  readonly observeAfter?: boolean;
}

export interface ApplyReport {
  readonly recovered: readonly GroupOutcome[];
  /** The host the plans were made from (the basis, or discovered under the lock). */
  readonly snapshot: HostSnapshot;
  /** The `vfio` intents' handoff and the `host` intents' handoff, in the CLI's report shape. */
  readonly prepare: HandoffReport;
  readonly release: HandoffReport;
  /** Per intent, in intent order. */
  readonly gpus: readonly GpuOutcome[];
  /** The host after the run: discovered again when recovery or a step changed it, else `snapshot`. */
  readonly after: HostSnapshot;
  /** The records after the run (read again when `after` was); empty for a dry run that read none. */
  readonly records: ReadonlyMap<number, GroupRecord>;
  /** How many times this call discovered the host (0 with a reused basis and nothing changed). */
  readonly discoveries: number;
}

/** Intents, or — for selections that name GPUs by id or `--all` — a function choosing them from the host under the lock. */
export type Intents = readonly Intent[] | ((view: { snapshot: HostSnapshot; records: () => Promise<ReadonlyMap<number, GroupRecord>> }) => Promise<readonly Intent[]> | readonly Intent[]);

/**
 * The engine's use cases: inspect (read-only) and `apply` — one run that takes the state lock once,
 * recovers an unfinished journal once, discovers the host once (or reuses the caller's basis), then
 * prepares the GPUs wanted on VFIO and releases the ones wanted back, and returns one report with
 * per-GPU outcomes. `prepare` and `release` (the CLI's commands) are `apply` with every intent the
 * same way. It refuses — before writing anything — when the verdict forbids the change.
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
    const users = await this.deviceUsers(snapshot, snapshot.gpus, []);
    const assessments = snapshot.gpus.map((g) => assessGpu(snapshot, g, { allowBootGpu: opts.allowBootGpu, users }));
    const plans = new Map<PciAddress, Plan>();
    for (const a of assessments) if (a.verdict === 'preparable') plans.set(a.gpu.fn.address, planPrepare(snapshot, [a]));
    return { snapshot, assessments, plans };
  }

  /** `vfio-handoff prepare`: every selected GPU wanted on VFIO; explicit selections refuse when one is blocked, `--all` skips those. */
  async prepare(selection: Selection, opts: { allowBootGpu: boolean; dryRun?: boolean; signal?: AbortSignal }): Promise<HandoffReport> {
    const report = await this.apply(
      ({ snapshot }) =>
        (selection.all ? snapshot.gpus : resolveSelectors(snapshot, selection.selectors)).map((g) => ({ address: g.fn.address, want: 'vfio' as const, allowBootGpu: opts.allowBootGpu })),
      { dryRun: opts.dryRun, signal: opts.signal, blocked: selection.all ? 'skip' : 'refuse', observeAfter: false },
    );
    return report.prepare;
  }

  /** `vfio-handoff release`: every selected GPU (`--all`: those on VFIO or recorded) wanted back; refuses while a VMM holds one unless forced. */
  async release(selection: Selection, opts: { dryRun?: boolean; force?: boolean; signal?: AbortSignal } = {}): Promise<HandoffReport> {
    const report = await this.apply(
      async ({ snapshot, records }) => {
        const recorded = await records();
        const gpus = selection.all
          ? snapshot.gpus.filter((g) => onVfio(snapshot, g.fn.address) || (g.fn.iommuGroup !== undefined && recorded.has(g.fn.iommuGroup)))
          : resolveSelectors(snapshot, selection.selectors);
        return gpus.map((g) => ({ address: g.fn.address, want: 'host' as const }));
      },
      { dryRun: opts.dryRun, signal: opts.signal, inUse: opts.force ? 'ignore' : 'refuse', observeAfter: false },
    );
    return report.release;
  }

  /**
   * One handoff run for a set of intents (the agent calls it once per pass). Under one lock: validate
   * the state files, finish an unfinished journal (a rollback that cannot finish stops the run:
   * RollbackFailedError), take the host view (the basis when still current, else one discovery),
   * assess every intent, run the prepare plan then the release plan (each journaled as before), and
   * discover once more if anything changed. Errors for the whole call: JournalError (lock held or bad
   * state file), RollbackFailedError, and with `refuse` policies BlockedError / InUseError.
   */
  async apply(intents: Intents, opts: ApplyOptions = {}): Promise<ApplyReport> {
    const dryRun = opts.dryRun ?? false;
    return this.locked(dryRun, async (executor, lockedRecords) => {
      const recovered = dryRun ? [] : refuseAfterFailedRecovery(await executor.recover(opts.signal));
      let records: ReadonlyMap<number, GroupRecord> | undefined = recovered.length === 0 ? lockedRecords : undefined;
      const readRecords = async (): Promise<ReadonlyMap<number, GroupRecord>> => (records ??= await this.deps.store.readRecords());
      let discoveries = 0;
      let snapshot: HostSnapshot;
      if (opts.basis && records !== undefined && sameRecords(opts.basis.records, records)) {
        snapshot = opts.basis.snapshot;
      } else {
        snapshot = await this.discover();
        discoveries++;
      }
      const chosen = typeof intents === 'function' ? await intents({ snapshot, records: readRecords }) : intents;

      const outcomes = new Map<PciAddress, GpuOutcome>();
      const vfio: { intent: Intent; gpu: Gpu }[] = [];
      const host: { intent: Intent; gpu: Gpu }[] = [];
      for (const intent of chosen) {
        const gpu = gpuAt(snapshot, intent.address);
        if (!gpu) {
          outcomes.set(intent.address, { address: intent.address, want: intent.want, outcome: 'not_found', error: { code: 'NOT_FOUND', message: `no GPU ${intent.address} on this host` } });
          continue;
        }
        (intent.want === 'vfio' ? vfio : host).push({ intent, gpu });
      }
      const scanRelease = opts.inUse !== 'ignore';
      const users = await this.deviceUsers(snapshot, vfio.map((x) => x.gpu), scanRelease ? host.map((x) => x.gpu) : []);
      const hostUsers = users.filter((u) => !u.path.startsWith('/dev/vfio/'));
      // A VMM holding /dev/vfio/<group> means a running VM: unbinding under it would crash the guest.
      const vmmUsers = users.filter((u) => u.path.startsWith('/dev/vfio/'));

      // Prepare: assessed with the host's device-file users; blocked ones per the policy.
      const assessed = vfio.map(({ intent, gpu }) => assessGpu(snapshot, gpu, { allowBootGpu: intent.allowBootGpu ?? false, users: hostUsers }));
      const blocked = assessed.filter((a) => a.verdict === 'blocked');
      if (opts.blocked === 'refuse' && blocked.length > 0) {
        throw new BlockedError(`refusing to prepare: ${blocked.map(blockedText).join('; ')}`, blocked.flatMap((a) => a.reasons));
      }
      for (const a of blocked) {
        if (opts.blocked === 'skip') continue;
        outcomes.set(a.gpu.fn.address, { address: a.gpu.fn.address, want: 'vfio', outcome: 'blocked', error: { code: 'BLOCKED', message: `refusing to prepare: ${blockedText(a)}` } });
      }
      const toPrepare = assessed.filter((a) => a.verdict !== 'blocked');

      // Release: anything held by a VMM per the policy.
      if (opts.inUse === 'refuse' && vmmUsers.length > 0) {
        throw new InUseError(`refusing to release: ${vmmUsers.map(userText).join('; ')}`);
      }
      // vfio hands out a group whole: releasing a group another intent of this run wants on VFIO would undo
      // that prepare (two GPUs behind root ports without ACS), so such a release is refused.
      const vfioGroups = new Map<number, PciAddress>();
      for (const a of toPrepare) if (a.gpu.fn.iommuGroup !== undefined && !vfioGroups.has(a.gpu.fn.iommuGroup)) vfioGroups.set(a.gpu.fn.iommuGroup, a.gpu.fn.address);
      const heldBy = (g: Gpu): DeviceUser[] => vmmUsers.filter((u) => u.address === g.fn.address || (g.fn.iommuGroup !== undefined && functionAt(snapshot, u.address)?.iommuGroup === g.fn.iommuGroup));
      const releasing = host.filter(({ gpu }) => {
        const keeper = gpu.fn.iommuGroup === undefined ? undefined : vfioGroups.get(gpu.fn.iommuGroup);
        if (keeper !== undefined) {
          const message = `refusing to release ${gpu.fn.address}: IOMMU group ${gpu.fn.iommuGroup} also holds ${keeper}, wanted on vfio-pci in the same run (vfio hands out a group whole)`;
          outcomes.set(gpu.fn.address, { address: gpu.fn.address, want: 'host', outcome: 'blocked', error: { code: 'GROUP_WANTED_ON_VFIO', message } });
          return false;
        }
        const held = heldBy(gpu);
        if (held.length === 0) return true;
        outcomes.set(gpu.fn.address, { address: gpu.fn.address, want: 'host', outcome: 'in_use', error: { code: 'IN_USE', message: `refusing to release: ${held.map(userText).join('; ')}` } });
        return false;
      });
      const released = releasing.map(({ gpu }) => assessGpu(snapshot, gpu, { allowBootGpu: true }));

      const preparePlan = planPrepare(snapshot, toPrepare);
      const prepareOutcomes = dryRun ? [] : await executor.run(preparePlan, opts.signal);
      const preparePreamble = executor.preamble;
      const releasePlan = planRelease(snapshot, released, released.length > 0 || host.length > 0 ? await readRecords() : new Map());
      const releaseOutcomes = dryRun ? [] : await executor.run(releasePlan, opts.signal);
      const releasePreamble = executor.preamble;

      for (const o of [...prepareOutcomes, ...releaseOutcomes]) {
        // A group outcome is every GPU's of the group: its record lists the GPUs it was prepared for, and an
        // intent for another GPU of the same group (two GPUs behind one switch) shares that outcome.
        const sameGroup = (o.operation === 'prepare' ? toPrepare : released).filter((a) => a.gpu.fn.iommuGroup === o.group).map((a) => a.gpu.fn.address);
        for (const address of new Set([...o.gpus, ...sameGroup])) {
          outcomes.set(address, {
            address,
            want: o.operation === 'prepare' ? 'vfio' : 'host',
            outcome: o.outcome,
            ...(o.error ? { error: o.error } : {}),
            ...(o.rollbackError ? { rollbackError: o.rollbackError } : {}),
          });
        }
      }
      const changed = recovered.length > 0 || [...prepareOutcomes, ...releaseOutcomes].some((o) => o.outcome !== 'already') || [...preparePreamble, ...releasePreamble].some((s) => s.outcome === 'done');
      let after = snapshot;
      if (changed && (opts.observeAfter ?? true)) {
        after = await this.discover();
        discoveries++;
        records = await this.deps.store.readRecords();
      }

      const report = (operation: 'prepare' | 'release', assessments: readonly Assessment[], skipped: readonly Assessment[], plan: Plan, preamble: readonly StepOutcome[], outs: readonly GroupOutcome[]): HandoffReport => ({
        operation,
        recovered,
        assessments,
        skipped,
        plan,
        preamble,
        outcomes: outs,
        dryRun,
      });
      return {
        recovered,
        snapshot,
        prepare: report('prepare', toPrepare, opts.blocked === 'skip' ? blocked : [], preparePlan, preparePreamble, prepareOutcomes),
        release: report('release', released, [], releasePlan, releasePreamble, releaseOutcomes),
        gpus: chosen.map((i) => outcomes.get(i.address) ?? { address: i.address, want: i.want, outcome: 'already' as const }),
        after,
        records: records ?? new Map(),
        discoveries,
      };
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

  /**
   * Runs `fn` holding the state lock (read-only runs take none), after both state files validated.
   * `fn` gets the records as read for that validation (undefined for read-only runs).
   */
  private async locked<T>(readOnly: boolean, fn: (executor: HandoffExecutor, records: ReadonlyMap<number, GroupRecord> | undefined) => Promise<T>): Promise<T> {
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
    if (readOnly) return fn(executor, undefined);
    const unlock = await this.deps.store.lock();
    try {
      // Both state files are validated before anything is written — recovery, the preamble's module loads and
      // the groups' steps alike: a file of the wrong shape must refuse the run (exit 7) with the host untouched.
      await this.deps.store.readJournal();
      const records = await this.deps.store.readRecords();
      this.deps.host.warmUp?.();
      return await fn(executor, records);
    } finally {
      await unlock();
    }
  }

  /**
   * Processes holding device files: of `preparing` GPUs' functions not on vfio-pci (DRM, fbdev, sound,
   * nvidia nodes), and of `releasing` GPUs' functions on vfio-pci (their /dev/vfio group node). One
   * procfs scan for both.
   */
  private async deviceUsers(snapshot: HostSnapshot, preparing: readonly Gpu[], releasing: readonly Gpu[]): Promise<DeviceUser[]> {
    if (!this.deps.scanDeviceUsers) return [];
    const wanted = new Map<PciAddress, string[]>();
    for (const [gpus, vfioOnly] of [[preparing, false], [releasing, true]] as const) {
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
    }
    if (wanted.size === 0) return [];
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

function blockedText(a: Assessment): string {
  return `${a.gpu.fn.address}: ${a.reasons.map((r) => r.code).join(', ')}`;
}

function userText(u: DeviceUser): string {
  return `${u.path} is open by pid ${u.pid} (${u.command})`;
}

/** Same groups with the same records (the basis is current). */
function sameRecords(a: ReadonlyMap<number, GroupRecord>, b: ReadonlyMap<number, GroupRecord>): boolean {
  if (a.size !== b.size) return false;
  for (const [group, r] of a) {
    const o = b.get(group);
    if (!o || JSON.stringify(r) !== JSON.stringify(o)) return false;
  }
  return true;
}
