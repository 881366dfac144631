/**
 * The pure step planners of plan.ts, case by case, with every expected step list written out here from the
 * driver-core order the module documents (override that lets the wanted driver probe, unbind, probe, then the
 * target override): release from a record, from a legacy record, for functions no record knows; a release
 * rollback's re-prepare; the "whatever host driver probes" target; and the IOMMU backend load for a group that
 * is already ready.
 */
import { describe, expect, it } from 'vitest';
import type { PciAddress } from '../core/pci-address.js';
import type { HostSnapshot } from '../host/model.js';
import { HOST_DRIVER, planPrepare, releaseSteps, reprepareSteps, restoreSteps, statesOf, type GroupRecord } from './plan.js';
import type { Assessment } from './verdict.js';

const A = '0000:41:00.0' as PciAddress;
const B = '0000:41:00.1' as PciAddress;
const C = '0000:41:00.2' as PciAddress;
const D = '0000:41:00.3' as PciAddress;
const fn = (address: PciAddress, driver: string | undefined, driverOverride: string | undefined) => ({ address, driver, driverOverride });

const NO_EXTRAS = { framebuffers: [], vtconsoles: [] };

describe('releaseSteps', () => {
  it('functions the record does not know: one on vfio-pci (or with a vfio-pci override) goes to the host driver, one elsewhere is left alone', () => {
    const record: GroupRecord = { group: 7, gpus: [A], originalDrivers: { [A]: 'snd_hda_intel' }, originalOverrides: { [A]: null }, ...NO_EXTRAS };
    const steps = releaseSteps(7, [fn(A, 'vfio-pci', 'vfio-pci'), fn(B, 'vfio-pci', 'vfio-pci'), fn(C, 'xhci_hcd', undefined), fn(D, undefined, 'vfio-pci'), fn('0000:41:00.4' as PciAddress, 'vfio-pci', undefined)], record);
    expect(steps).toEqual([
      { kind: 'clear-override', address: A },
      { kind: 'unbind-driver', address: A, driver: 'vfio-pci' },
      { kind: 'probe', address: A, expect: 'snd_hda_intel' },
      { kind: 'clear-override', address: B },
      { kind: 'unbind-driver', address: B, driver: 'vfio-pci' },
      { kind: 'probe', address: B, expect: undefined },
      // No driver but a stale vfio-pci override: the override goes, then the host's own match probes.
      { kind: 'clear-override', address: D },
      { kind: 'probe', address: D, expect: undefined },
      // On vfio-pci without an override (vfio-pci.ids=): unbind and let the host driver probe.
      { kind: 'unbind-driver', address: '0000:41:00.4', driver: 'vfio-pci' },
      { kind: 'probe', address: '0000:41:00.4', expect: undefined },
      // C (xhci_hcd, not ours) is neither written nor verified; nothing stays on vfio-pci, so the node must go.
      { kind: 'verify-group', group: 7, expect: 'host', members: [A, B, D, '0000:41:00.4'] },
    ]);
  });

  it('a function recorded as already on vfio-pci stays there, so /dev/vfio/<group> is not expected to go', () => {
    const record: GroupRecord = {
      group: 3,
      gpus: [A],
      originalDrivers: { [A]: null, [B]: 'vfio-pci' },
      originalOverrides: { [A]: null, [B]: 'vfio-pci' },
      framebuffers: [{ device: 'simple-framebuffer.0', driver: 'simple-framebuffer' }],
      vtconsoles: ['vtcon1'],
    };
    const steps = releaseSteps(3, [fn(A, 'vfio-pci', 'vfio-pci'), fn(B, 'vfio-pci', 'vfio-pci')], record);
    expect(steps).toEqual([
      { kind: 'clear-override', address: A },
      { kind: 'unbind-driver', address: A, driver: 'vfio-pci' },
      { kind: 'verify-group', group: 3, expect: 'host', members: [A], nodeGone: false },
      { kind: 'bind-framebuffer', device: 'simple-framebuffer.0', driver: 'simple-framebuffer' },
      { kind: 'bind-vtconsole', vtconsole: 'vtcon1' },
    ]);
  });

  it('a legacy record (drivers only, no overrides): none and vfio-pci both mean the host driver, a named driver is probed by name; overrides are cleared', () => {
    const record: GroupRecord = { group: 5, gpus: [A], originalDrivers: { [A]: null, [B]: 'vfio-pci', [C]: 'snd_hda_intel' }, ...NO_EXTRAS };
    const steps = releaseSteps(5, [fn(A, 'vfio-pci', 'vfio-pci'), fn(B, 'vfio-pci', 'vfio-pci'), fn(C, 'vfio-pci', 'vfio-pci')], record);
    expect(steps).toEqual([
      { kind: 'clear-override', address: A },
      { kind: 'unbind-driver', address: A, driver: 'vfio-pci' },
      { kind: 'probe', address: A, expect: undefined },
      { kind: 'clear-override', address: B },
      { kind: 'unbind-driver', address: B, driver: 'vfio-pci' },
      { kind: 'probe', address: B, expect: undefined },
      { kind: 'clear-override', address: C },
      { kind: 'unbind-driver', address: C, driver: 'vfio-pci' },
      { kind: 'probe', address: C, expect: 'snd_hda_intel' },
      { kind: 'verify-group', group: 5, expect: 'host', members: [A, B, C] },
    ]);
  });
});

describe('restoreSteps to "whatever host driver probes"', () => {
  const host = { driver: HOST_DRIVER, override: null };
  it('a function already on a host driver needs nothing; one without a driver is probed; one on vfio-pci is unbound and probed', () => {
    expect(restoreSteps([fn(A, 'nouveau', undefined)], { [A]: host })).toEqual([]);
    expect(restoreSteps([fn(A, undefined, undefined)], { [A]: host })).toEqual([{ kind: 'probe', address: A, expect: undefined }]);
    expect(restoreSteps([fn(A, 'vfio-pci', undefined)], { [A]: host })).toEqual([
      { kind: 'unbind-driver', address: A, driver: 'vfio-pci' },
      { kind: 'probe', address: A, expect: undefined },
    ]);
  });
});

describe('reprepareSteps (undoing a release that failed halfway)', () => {
  it('each function not on vfio-pci gets the override it lacks, leaves its driver and probes vfio-pci; the whole group is verified on vfio', () => {
    const steps = reprepareSteps(9, [fn(A, 'snd_hda_intel', undefined), fn(B, 'vfio-pci', 'vfio-pci'), fn(C, undefined, 'vfio-pci')]);
    expect(steps).toEqual([
      { kind: 'set-override', address: A, driver: 'vfio-pci' },
      { kind: 'unbind-driver', address: A, driver: 'snd_hda_intel' },
      { kind: 'probe', address: A, expect: 'vfio-pci' },
      { kind: 'probe', address: C, expect: 'vfio-pci' },
      { kind: 'verify-group', group: 9, expect: 'vfio', members: [A, B, C] },
    ]);
  });
});

describe('planPrepare preamble', () => {
  /** Only the fields planPrepare reads: vfio-pci loaded, no IOMMU backend (vfio-pci insmod'ed without modprobe's softdep). */
  const snapshot = {
    vfioPci: { loaded: true, loadable: true },
    vfioIommuType1: { loaded: false },
    iommufd: false,
    gpus: [],
    framebuffers: [],
    vtconsoles: [],
    vfioGroupNodes: [4],
  } as unknown as HostSnapshot;
  const gpuFn = { address: A, driver: 'vfio-pci', driverOverride: 'vfio-pci', iommuGroup: 4 };
  const assessment = (verdict: Assessment['verdict']) =>
    ({ gpu: { fn: gpuFn, framebuffers: [] }, verdict, members: [{ fn: gpuFn, role: 'gpu' }], reasons: [], warnings: [] }) as unknown as Assessment;

  it('a group already ready on vfio-pci still needs an IOMMU backend: vfio_iommu_type1 is loaded, and nothing of the group is written', () => {
    const plan = planPrepare(snapshot, [assessment('ready')]);
    expect(plan.preamble).toEqual([{ kind: 'load-module', module: 'vfio_iommu_type1' }]);
    expect(plan.groups.map((g) => g.steps)).toEqual([[]]);
  });

  it('a blocked GPU loads nothing, not even a missing vfio-pci', () => {
    expect(planPrepare(snapshot, [assessment('blocked')]).preamble).toEqual([]);
    const bare = { ...snapshot, vfioPci: { loaded: false, loadable: true } } as HostSnapshot;
    expect(planPrepare(bare, [assessment('blocked')]).preamble).toEqual([]);
    expect(planPrepare(bare, [assessment('preparable')]).preamble).toEqual([
      { kind: 'load-module', module: 'vfio-pci' },
      { kind: 'load-module', module: 'vfio_iommu_type1' },
    ]);
  });
});

describe('planPrepare group order', () => {
  it('groups are planned in group-number order, whatever order the GPUs were assessed in', () => {
    const snapshot = { vfioPci: { loaded: true, loadable: true }, vfioIommuType1: { loaded: true }, iommufd: false, gpus: [], framebuffers: [], vtconsoles: [], vfioGroupNodes: [] } as unknown as HostSnapshot;
    const assessed = (address: PciAddress, group: number) => {
      const f = { address, driver: 'nvidia', driverOverride: undefined, iommuGroup: group };
      return { gpu: { fn: f, framebuffers: [] }, verdict: 'preparable', members: [{ fn: f, role: 'gpu' }], reasons: [], warnings: [] } as unknown as Assessment;
    };
    // A host whose lower address sits in the higher group (firmware numbering): 0000:18:00.0 in 45, 0000:3b:00.0 in 31.
    const plan = planPrepare(snapshot, [assessed('0000:18:00.0' as PciAddress, 45), assessed('0000:3b:00.0' as PciAddress, 31)]);
    expect(plan.groups.map((g) => [g.group, g.gpus])).toEqual([
      [31, ['0000:3b:00.0']],
      [45, ['0000:18:00.0']],
    ]);
  });
});

describe('planPrepare: the framebuffer console', () => {
  const gpuFn = { address: A, driver: undefined, driverOverride: undefined, iommuGroup: 1 };
  const assessment = { gpu: { fn: gpuFn, framebuffers: ['efi-framebuffer.0'] }, verdict: 'preparable', members: [{ fn: gpuFn, role: 'gpu' }], reasons: [], warnings: [] } as unknown as Assessment;
  const snapshotWith = (vtconsoles: { name: string; kind: string; bound: boolean }[]) =>
    ({
      vfioPci: { loaded: true, loadable: true },
      vfioIommuType1: { loaded: true },
      iommufd: false,
      gpus: [],
      framebuffers: [{ device: 'efi-framebuffer.0', driver: 'efi-framebuffer', owner: { address: A } }],
      vtconsoles,
      vfioGroupNodes: [],
    }) as unknown as HostSnapshot;

  it('only a bound fbcon is detached (and remembered); an fbcon someone already detached and the dummy console are left alone', () => {
    const bound = planPrepare(snapshotWith([{ name: 'vtcon0', kind: 'dummy', bound: false }, { name: 'vtcon1', kind: 'fbcon', bound: true }]), [assessment]);
    expect(bound.groups[0]!.steps.filter((s) => s.kind === 'unbind-vtconsole')).toEqual([{ kind: 'unbind-vtconsole', vtconsole: 'vtcon1' }]);
    expect(bound.groups[0]!.record.vtconsoles).toEqual(['vtcon1']);
    const detached = planPrepare(snapshotWith([{ name: 'vtcon0', kind: 'dummy', bound: true }, { name: 'vtcon1', kind: 'fbcon', bound: false }]), [assessment]);
    expect(detached.groups[0]!.steps.filter((s) => s.kind === 'unbind-vtconsole')).toEqual([]);
    expect(detached.groups[0]!.record.vtconsoles).toEqual([]);
  });
});

describe('restoreSteps: which override is in force while probing', () => {
  it('an original override naming the original driver is set before the probe; one naming another driver is set only after it', () => {
    const onVfio = fn(A, 'vfio-pci', 'vfio-pci');
    expect(restoreSteps([onVfio], { [A]: { driver: 'snd_hda_intel', override: 'snd_hda_intel' } })).toEqual([
      { kind: 'set-override', address: A, driver: 'snd_hda_intel' },
      { kind: 'unbind-driver', address: A, driver: 'vfio-pci' },
      { kind: 'probe', address: A, expect: 'snd_hda_intel' },
    ]);
    expect(restoreSteps([onVfio], { [A]: { driver: 'nvidia', override: 'pci-stub' } })).toEqual([
      { kind: 'clear-override', address: A },
      { kind: 'unbind-driver', address: A, driver: 'vfio-pci' },
      { kind: 'probe', address: A, expect: 'nvidia' },
      { kind: 'set-override', address: A, driver: 'pci-stub' },
    ]);
  });
});

describe('statesOf', () => {
  it('each function\u2019s driver and override, none as null', () => {
    expect(statesOf([fn(A, 'nvidia', undefined), fn(B, undefined, 'vfio-pci')])).toEqual({
      [A]: { driver: 'nvidia', override: null },
      [B]: { driver: null, override: 'vfio-pci' },
    });
  });
});

describe('planPrepare: framebuffers of the group', () => {
  const snapshotWith = (framebuffers: object[]) =>
    ({ vfioPci: { loaded: true, loadable: true }, vfioIommuType1: { loaded: true }, iommufd: false, gpus: [], framebuffers, vtconsoles: [], vfioGroupNodes: [] }) as unknown as HostSnapshot;
  const gpuA = { address: A, driver: undefined, driverOverride: undefined, iommuGroup: 2 };
  const gpuB = { address: B, driver: undefined, driverOverride: undefined, iommuGroup: 2 };
  const members = [{ fn: gpuA, role: 'gpu' }, { fn: gpuB, role: 'gpu' }];
  const assessed = (f: typeof gpuA, framebuffers: string[]) => ({ gpu: { fn: f, framebuffers }, verdict: 'preparable', members, reasons: [], warnings: [] }) as unknown as Assessment;

  it('a framebuffer owned by either GPU of a two-GPU group is released once and remembered; one without a driver is not', () => {
    const plan = planPrepare(
      snapshotWith([
        { device: 'simple-framebuffer.0', driver: 'simple-framebuffer', owner: { address: B } },
        { device: 'efi-framebuffer.0', driver: undefined, owner: { address: A } },
      ]),
      [assessed(gpuA, ['efi-framebuffer.0']), assessed(gpuB, ['simple-framebuffer.0'])],
    );
    expect(plan.groups).toHaveLength(1);
    expect(plan.groups[0]!.steps.filter((s) => s.kind === 'unbind-framebuffer')).toEqual([{ kind: 'unbind-framebuffer', device: 'simple-framebuffer.0', driver: 'simple-framebuffer' }]);
    expect(plan.groups[0]!.record.framebuffers).toEqual([{ device: 'simple-framebuffer.0', driver: 'simple-framebuffer' }]);
    expect(plan.groups[0]!.before).toEqual({ [A]: { driver: null, override: null }, [B]: { driver: null, override: null } });
  });
});
