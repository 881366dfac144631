import type { PciAddress } from '../core/pci-address.js';
import { vfioIommuBackendAvailable, type Framebuffer, type Gpu, type HostSnapshot } from '../host/model.js';
import { functionAt } from '../host/lookup.js';
import { isVfioDriver } from '../host/vendor.js';
import { VFIO_IOMMU_TYPE1 } from '../sysfs/paths.js';
import { cardMembers, endpoints, VFIO_DRIVER } from './group.js';
import type { Step } from './steps.js';
import type { Assessment } from './verdict.js';

/**
 * What prepare changed on a group, kept in the state dir so release (and crash rollback) can put back
 * exactly what was there: the drivers the functions had, and the framebuffer/console we detached.
 */
export interface GroupRecord {
  readonly group: number;
  readonly gpus: readonly PciAddress[];
  /** Per card function, the driver it had before vfio-handoff first touched it (null: none), vfio-pci included. */
  readonly originalDrivers: Readonly<Record<string, string | null>>;
  /**
   * Per card function, its `driver_override` before vfio-handoff first touched it (null: unset).
   * Absent in records written before overrides were kept; those restore an unset override.
   */
  readonly originalOverrides?: Readonly<Record<string, string | null>>;
  readonly framebuffers: readonly { readonly device: string; readonly driver: string }[];
  readonly vtconsoles: readonly string[];
}

/** What one function looked like: its driver and its driver_override (null: none / unset). */
export interface FunctionState {
  readonly driver: string | null;
  readonly override: string | null;
}

export interface GroupPlan {
  readonly group: number;
  readonly gpus: readonly PciAddress[];
  readonly steps: readonly Step[];
  /** For prepare: the record to store before the first write. For release: the record being undone. */
  readonly record: GroupRecord;
  /** Every written function's state when this plan was made: a failed run is rolled back to exactly this. */
  readonly before?: Readonly<Record<string, FunctionState>>;
}

export interface Plan {
  readonly operation: 'prepare' | 'release';
  /** Host-wide steps that run once before the group steps (loading vfio-pci). */
  readonly preamble: readonly Step[];
  readonly groups: readonly GroupPlan[];
}

export function planSteps(plan: Plan): Step[] {
  return [...plan.preamble, ...plan.groups.flatMap((g) => g.steps)];
}

/**
 * Plans prepare for GPUs that were assessed `preparable` (or `ready`, which yields no steps) — pure.
 * Per group: detach fbcon and the firmware framebuffer driver when a GPU of the group holds them; then,
 * per endpoint, driver_override first (so nothing can re-probe the host driver between unbind and
 * probe — the reason driverctl does it in this order), unbind the host driver, drivers_probe; finally
 * verify the whole group.
 */
export function planPrepare(snapshot: HostSnapshot, assessments: readonly Assessment[]): Plan {
  const preamble: Step[] = [];
  if (!snapshot.vfioPci.loaded && assessments.some((a) => a.verdict === 'preparable')) {
    preamble.push({ kind: 'load-module', module: VFIO_DRIVER });
  }
  // A group on vfio-pci is of no use to a VMM without an IOMMU backend; only modprobe's handling of vfio's
  // `softdep post:` pulls vfio_iommu_type1 in, so a vfio-pci loaded any other way (insmod, initramfs) lacks it.
  if (!vfioIommuBackendAvailable(snapshot) && assessments.some((a) => a.verdict === 'preparable' || a.verdict === 'ready')) {
    preamble.push({ kind: 'load-module', module: VFIO_IOMMU_TYPE1 });
  }
  const groups: GroupPlan[] = [];
  for (const [group, list] of byGroup(assessments)) {
    const first = list[0]!;
    const eps = endpoints(first.members);
    // Only the GPUs' own card functions are ever written; a foreign member (allowed only when already
    // on vfio-pci) is verified but never touched.
    const own = cardMembers(first.members);
    const gpus = list.map((a) => a.gpu);
    // Every GPU of the group goes to vfio-pci, so the framebuffers of each (a boot GPU sharing the group
    // with the one asked for, allowed by the verdict only with --allow-boot-gpu) are released first.
    const mates = snapshot.gpus.filter((g) => g.fn.iommuGroup === group && !gpus.some((x) => x.fn.address === g.fn.address));
    const owned = ownedFramebuffers(snapshot, [...gpus, ...mates]);
    const fbconsoles = owned.length > 0 ? snapshot.vtconsoles.filter((v) => v.kind === 'fbcon' && v.bound).map((v) => v.name) : [];
    const steps: Step[] = [];
    for (const vt of fbconsoles) steps.push({ kind: 'unbind-vtconsole', vtconsole: vt });
    for (const fb of owned) steps.push({ kind: 'unbind-framebuffer', device: fb.device, driver: fb.driver! });
    let changes = steps.length > 0;
    for (const m of own) {
      const fn = m.fn;
      if (fn.driver === VFIO_DRIVER) continue;
      changes = true;
      if (fn.driverOverride !== VFIO_DRIVER) steps.push({ kind: 'set-override', address: fn.address, driver: VFIO_DRIVER });
      if (fn.driver !== undefined) steps.push({ kind: 'unbind-driver', address: fn.address, driver: fn.driver });
      steps.push({ kind: 'probe', address: fn.address, expect: VFIO_DRIVER });
    }
    const nodeMissing = !snapshot.vfioGroupNodes.includes(group);
    if (changes || nodeMissing) {
      // The card functions must end on vfio-pci; a foreign member is checked only when its owner put it there
      // (a driverless one keeps the group viable and is never ours to bind).
      const verified = eps.filter((m) => m.role !== 'foreign' || m.fn.driver === VFIO_DRIVER);
      steps.push({ kind: 'verify-group', group, expect: 'vfio', members: verified.map((m) => m.fn.address) });
    }
    groups.push({
      group,
      gpus: gpus.map((g) => g.fn.address),
      steps,
      record: {
        group,
        gpus: gpus.map((g) => g.fn.address),
        originalDrivers: Object.fromEntries(own.map((m) => [m.fn.address, m.fn.driver ?? null])),
        originalOverrides: Object.fromEntries(own.map((m) => [m.fn.address, m.fn.driverOverride ?? null])),
        framebuffers: owned.map((fb) => ({ device: fb.device, driver: fb.driver! })),
        vtconsoles: fbconsoles,
      },
      before: statesOf(own.map((m) => m.fn)),
    });
  }
  return { operation: 'prepare', preamble, groups };
}

/**
 * Plans release (also used to roll back a failed or crashed prepare) — pure. Returns each endpoint
 * to its original driver when one was recorded (else to whatever the host would probe), then gives
 * the firmware framebuffer and fbcon back if prepare detached them.
 */
export function planRelease(snapshot: HostSnapshot, assessments: readonly Assessment[], records: ReadonlyMap<number, GroupRecord>): Plan {
  const groups: GroupPlan[] = [];
  for (const [group, list] of byGroup(assessments)) {
    const own = cardMembers(list[0]!.members);
    const recorded = records.get(group);
    const record = recorded ?? {
      group,
      gpus: list.map((a) => a.gpu.fn.address),
      originalDrivers: {},
      framebuffers: [],
      vtconsoles: [],
    };
    if (!recorded) {
      // Not prepared by vfio-handoff (bound at boot with vfio-pci.ids=, or by another tool): nothing of
      // ours to give back, so nothing is written.
      groups.push({ group, gpus: record.gpus, steps: [], record });
      continue;
    }
    // Only what prepare took goes back.
    const fns = own.map((m) => m.fn).filter((f) => f.address in recorded.originalDrivers);
    const recordedAddresses = Object.keys(recorded.originalDrivers);
    const othersKeepNode = othersKeepVfioNode(snapshot, group, new Set(recordedAddresses));
    // A recorded function still listed in the group but unreadable now cannot be planned for; the final
    // check must still see it off vfio-pci, or the release fails (and is rolled back, the record kept)
    // rather than report a half-bound group as released.
    const listed = new Set<string>(snapshot.groups.find((g) => g.id === group)?.members);
    const unreadable = recordedAddresses.filter((a) => listed.has(a) && !fns.some((f) => f.address === a)) as PciAddress[];
    const steps = releaseSteps(group, fns, record, othersKeepNode, unreadable);
    groups.push({ group, gpus: record.gpus, steps, record, before: statesOf(fns) });
  }
  return { operation: 'release', preamble: [], groups };
}

type CurrentFunction = { readonly address: PciAddress; readonly driver: string | undefined; readonly driverOverride: string | undefined };

/**
 * Release steps for one group from the functions' current state; shared by release and the rollback
 * of a failed prepare. Each function goes back to exactly what the record says it had before
 * vfio-handoff first touched it — driver and driver_override — so a function that was already on
 * vfio-pci (another tool bound it) stays there. Functions the record does not know (no record: a group
 * someone else bound) go to their host driver with the override cleared. `othersKeepNode`: another
 * function of the group, left as it is, keeps `/dev/vfio/<group>` (see othersKeepVfioNode), so the
 * release must not wait for the node to go. `alsoVerify`: functions the final check must also see off
 * vfio-pci though no step can be planned for them (a recorded function that cannot be read now).
 */
export function releaseSteps(group: number, fns: readonly CurrentFunction[], record: GroupRecord, othersKeepNode = false, alsoVerify: readonly PciAddress[] = []): Step[] {
  const target: Record<string, FunctionState> = {};
  for (const fn of fns) {
    const driver = record.originalDrivers[fn.address];
    if (driver === undefined) {
      if (fn.driver !== VFIO_DRIVER && fn.driverOverride !== VFIO_DRIVER) continue; // not ours, not on vfio: leave it
      target[fn.address] = { driver: HOST_DRIVER, override: null };
    } else if (record.originalOverrides === undefined) {
      // Legacy record (drivers only, vfio-pci stored as null): the host driver, override cleared.
      target[fn.address] = { driver: driver === null || driver === VFIO_DRIVER ? HOST_DRIVER : driver, override: null };
    } else {
      target[fn.address] = { driver, override: record.originalOverrides[fn.address] ?? null };
    }
  }
  const steps = restoreSteps(fns, target);
  const staysOnVfio =
    fns.some((f) => (target[f.address] ? target[f.address]!.driver === VFIO_DRIVER : f.driver === VFIO_DRIVER)) || othersKeepNode;
  steps.push({
    kind: 'verify-group',
    group,
    expect: 'host',
    members: [...fns.filter((f) => target[f.address] !== undefined && target[f.address]!.driver !== VFIO_DRIVER).map((f) => f.address), ...alsoVerify],
    // Someone else's function still on vfio-pci keeps /dev/vfio/<group>; only ours must have left.
    ...(staysOnVfio ? { nodeGone: false } : {}),
  });
  for (const fb of record.framebuffers) steps.push({ kind: 'bind-framebuffer', device: fb.device, driver: fb.driver });
  for (const vt of record.vtconsoles) steps.push({ kind: 'bind-vtconsole', vtconsole: vt });
  return steps;
}

/**
 * Whether a function of `group` other than `ours` keeps `/dev/vfio/<group>` after ours leave vfio-pci:
 * one bound to vfio-pci or a vfio-pci variant driver (or overridden to one, so its next probe binds it there) — a foreign function its
 * owner gave to vfio-pci — or one listed in the group that cannot be read, which may be either.
 */
export function othersKeepVfioNode(snapshot: HostSnapshot, group: number, ours: ReadonlySet<string>): boolean {
  const listed = snapshot.groups.find((g) => g.id === group)?.members ?? [];
  return listed.some((a) => {
    if (ours.has(a)) return false;
    const f = functionAt(snapshot, a);
    return f === undefined || isVfioDriver(f.driver) || isVfioDriver(f.driverOverride);
  });
}

/** Target driver meaning "whatever host driver probes" (used where no exact original is known). */
export const HOST_DRIVER = '*host*';

/**
 * Steps that take each function from its current state to `target` (driver and driver_override);
 * functions already there get none. Order per function: the override that lets the wanted driver
 * probe, unbind, probe, then the target override if it differs from that one (an override never
 * unbinds, so setting it last cannot disturb the driver).
 */
export function restoreSteps(fns: readonly CurrentFunction[], target: Readonly<Record<string, FunctionState>>): Step[] {
  const steps: Step[] = [];
  for (const fn of fns) {
    const want = target[fn.address];
    if (!want) continue;
    const curDriver = fn.driver ?? null;
    const curOverride = fn.driverOverride ?? null;
    const driverOk = want.driver === HOST_DRIVER ? curDriver !== null && curDriver !== VFIO_DRIVER : curDriver === want.driver;
    let override = curOverride;
    if (!driverOk) {
      // The override in force while probing: the wanted driver's name when it must be forced (vfio-pci,
      // or the original override named it), else none so the host's own match decides.
      const probeOverride = want.driver === VFIO_DRIVER || (want.override !== null && want.override === want.driver) ? want.driver : null;
      if (probeOverride !== override) {
        steps.push(probeOverride === null ? { kind: 'clear-override', address: fn.address } : { kind: 'set-override', address: fn.address, driver: probeOverride });
        override = probeOverride;
      }
      if (curDriver !== null) steps.push({ kind: 'unbind-driver', address: fn.address, driver: curDriver });
      if (want.driver !== null) {
        steps.push({ kind: 'probe', address: fn.address, expect: want.driver === HOST_DRIVER ? undefined : want.driver });
      }
    }
    if (want.override !== override) {
      steps.push(want.override === null ? { kind: 'clear-override', address: fn.address } : { kind: 'set-override', address: fn.address, driver: want.override });
    }
  }
  return steps;
}

/** The current driver and override of each function, as plan bookkeeping. */
export function statesOf(fns: readonly CurrentFunction[]): Record<string, FunctionState> {
  return Object.fromEntries(fns.map((f) => [f.address, { driver: f.driver ?? null, override: f.driverOverride ?? null }]));
}

function ownedFramebuffers(snapshot: HostSnapshot, gpus: readonly Gpu[]): Framebuffer[] {
  return snapshot.framebuffers.filter(
    (fb) => fb.driver !== undefined && gpus.some((g) => fb.owner?.address === g.fn.address || g.framebuffers.includes(fb.device)),
  );
}

function byGroup(assessments: readonly Assessment[]): Map<number, Assessment[]> {
  const out = new Map<number, Assessment[]>();
  for (const a of assessments) {
    const g = a.gpu.fn.iommuGroup;
    if (g === undefined) continue; // assessGpu blocks these; nothing to plan without a group
    const list = out.get(g) ?? [];
    list.push(a);
    out.set(g, list);
  }
  return new Map([...out.entries()].sort((a, b) => a[0] - b[0]));
}

/** Steps that put a group (back) on vfio-pci from its current state; undoes a release that failed halfway. */
export function reprepareSteps(
  group: number,
  fns: readonly { address: PciAddress; driver: string | undefined; driverOverride: string | undefined }[],
): Step[] {
  const steps: Step[] = [];
  for (const fn of fns) {
    if (fn.driver === VFIO_DRIVER) continue;
    if (fn.driverOverride !== VFIO_DRIVER) steps.push({ kind: 'set-override', address: fn.address, driver: VFIO_DRIVER });
    if (fn.driver !== undefined) steps.push({ kind: 'unbind-driver', address: fn.address, driver: fn.driver });
    steps.push({ kind: 'probe', address: fn.address, expect: VFIO_DRIVER });
  }
  steps.push({ kind: 'verify-group', group, expect: 'vfio', members: fns.map((f) => f.address) });
  return steps;
}
