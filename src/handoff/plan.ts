import type { PciAddress } from '../core/pci-address.js';
import { vfioIommuBackendAvailable, type Framebuffer, type Gpu, type HostSnapshot } from '../host/model.js';
import { VFIO_IOMMU_TYPE1 } from '../sysfs/paths.js';
import { endpoints, VFIO_DRIVER } from './group.js';
import type { Step } from './steps.js';
import type { Assessment } from './verdict.js';

/**
 * What prepare changed on a group, kept in the state dir so release (and crash rollback) can put back
 * exactly what was there: the drivers the functions had, and the framebuffer/console we detached.
 */
export interface GroupRecord {
  readonly group: number;
  readonly gpus: readonly PciAddress[];
  readonly originalDrivers: Readonly<Record<string, string | null>>;
  readonly framebuffers: readonly { readonly device: string; readonly driver: string }[];
  readonly vtconsoles: readonly string[];
}

export interface GroupPlan {
  readonly group: number;
  readonly gpus: readonly PciAddress[];
  readonly steps: readonly Step[];
  /** For prepare: the record to store before the first write. For release: the record being undone. */
  readonly record: GroupRecord;
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
    const gpus = list.map((a) => a.gpu);
    const owned = ownedFramebuffers(snapshot, gpus);
    const fbconsoles = owned.length > 0 ? snapshot.vtconsoles.filter((v) => v.kind === 'fbcon' && v.bound).map((v) => v.name) : [];
    const steps: Step[] = [];
    for (const vt of fbconsoles) steps.push({ kind: 'unbind-vtconsole', vtconsole: vt });
    for (const fb of owned) steps.push({ kind: 'unbind-framebuffer', device: fb.device, driver: fb.driver! });
    let changes = steps.length > 0;
    for (const m of eps) {
      const fn = m.fn;
      if (fn.driver === VFIO_DRIVER) continue;
      changes = true;
      if (fn.driverOverride !== VFIO_DRIVER) steps.push({ kind: 'set-override', address: fn.address, driver: VFIO_DRIVER });
      if (fn.driver !== undefined) steps.push({ kind: 'unbind-driver', address: fn.address, driver: fn.driver });
      steps.push({ kind: 'probe', address: fn.address, expect: VFIO_DRIVER });
    }
    const nodeMissing = !snapshot.vfioGroupNodes.includes(group);
    if (changes || nodeMissing) {
      steps.push({ kind: 'verify-group', group, expect: 'vfio', members: eps.map((m) => m.fn.address) });
    }
    groups.push({
      group,
      gpus: gpus.map((g) => g.fn.address),
      steps,
      record: {
        group,
        gpus: gpus.map((g) => g.fn.address),
        originalDrivers: Object.fromEntries(eps.map((m) => [m.fn.address, m.fn.driver ?? null])),
        framebuffers: owned.map((fb) => ({ device: fb.device, driver: fb.driver! })),
        vtconsoles: fbconsoles,
      },
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
    const eps = endpoints(list[0]!.members);
    const record = records.get(group) ?? {
      group,
      gpus: list.map((a) => a.gpu.fn.address),
      originalDrivers: {},
      framebuffers: [],
      vtconsoles: [],
    };
    groups.push({ group, gpus: record.gpus, steps: releaseSteps(group, eps.map((m) => m.fn), record), record });
  }
  return { operation: 'release', preamble: [], groups };
}

/** Release steps for one group from the functions' current state; shared by release and rollback. */
export function releaseSteps(
  group: number,
  fns: readonly { address: PciAddress; driver: string | undefined; driverOverride: string | undefined }[],
  record: GroupRecord,
): Step[] {
  const steps: Step[] = [];
  for (const fn of fns) {
    const touched = fn.driver === VFIO_DRIVER || fn.driverOverride === VFIO_DRIVER || record.originalDrivers[fn.address] !== undefined;
    if (!touched) continue;
    if (fn.driverOverride !== undefined) steps.push({ kind: 'clear-override', address: fn.address });
    if (fn.driver === VFIO_DRIVER) steps.push({ kind: 'unbind-driver', address: fn.address, driver: VFIO_DRIVER });
    const original = record.originalDrivers[fn.address];
    if (fn.driver === VFIO_DRIVER || fn.driver === undefined) {
      steps.push({ kind: 'probe', address: fn.address, expect: original && original !== VFIO_DRIVER ? original : undefined });
    }
  }
  steps.push({ kind: 'verify-group', group, expect: 'host', members: fns.map((f) => f.address) });
  for (const fb of record.framebuffers) steps.push({ kind: 'bind-framebuffer', device: fb.device, driver: fb.driver });
  for (const vt of record.vtconsoles) steps.push({ kind: 'bind-vtconsole', vtconsole: vt });
  return steps;
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
