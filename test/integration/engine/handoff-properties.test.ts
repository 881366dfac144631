import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { HostWriteError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { groupMembers } from '../../../src/handoff/group.js';
import { discoverHost } from '../../../src/host/discover.js';
import type { HostSnapshot } from '../../../src/host/model.js';
import { listBuiltinProfiles, loadBuiltinProfile } from '../../../src/profiles/load.js';
import type { HostProfile, ProfileDevice } from '../../../src/profiles/profile.js';
import type { HostPort } from '../../../src/sysfs/port.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

/**
 * Issue 9, kinds 1 and 3 as properties, over every built-in profile and over random hosts whose groups
 * mix the GPU's own functions, other vendors' functions in its slot, devices of other slots and bridges:
 * - no write ever names a function that is not a card function (gpu/companion) of a selected GPU's group;
 * - a prepare that fails at any write is rolled back so that every function has its prior driver AND
 *   driver_override; a release after a successful prepare does the same.
 */

/** Fails the n-th sysfs write (1-based) with EIO; records every attempted write. */
function failingAt(kernel: SimulatedKernel, n: number | undefined): { host: HostPort; attempted: string[] } {
  const attempted: string[] = [];
  let count = 0;
  const host: HostPort = {
    readText: (p) => kernel.readText(p),
    readLink: (p) => kernel.readLink(p),
    list: (p) => kernel.list(p),
    exists: (p) => kernel.exists(p),
    loadModule: (m, o) => kernel.loadModule(m, o),
    writeText: async (p, v, o) => {
      attempted.push(`${p} ${v}`);
      if (++count === n) throw new HostWriteError(p, v, 'EIO');
      return kernel.writeText(p, v, o);
    },
  };
  return { host, attempted };
}

type Pci = { driver: string | undefined; driverOverride: string | undefined };
const pciState = (kernel: SimulatedKernel): Record<string, Pci> =>
  Object.fromEntries(kernel.state().devices.map((d) => [d.address, { driver: d.driver, driverOverride: d.driverOverride }]));

/** Card functions (roles gpu/companion) of the groups of the chosen GPUs: the only addresses a write may name. */
function writable(snapshot: HostSnapshot, chosen: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const a of chosen) {
    const gpu = snapshot.gpus.find((g) => g.fn.address === a)!;
    for (const m of groupMembers(snapshot, gpu)) if (m.role === 'gpu' || m.role === 'companion') out.add(m.fn.address);
  }
  return out;
}

const ADDRESS = /[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]/g;

async function checkRun(
  profile: HostProfile,
  chosen: readonly string[],
  allowBootGpu: boolean,
  failAt: number | undefined,
  oracle?: ReadonlySet<string>,
): Promise<void> {
  const kernel = new SimulatedKernel(profile);
  const before = await discoverHost(kernel);
  const initial = pciState(kernel);
  const { host, attempted } = failingAt(kernel, failAt);
  const store = new MemoryStateStore();
  const sut = new HandoffEngine({ host, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 60, writeTimeoutMs: 500 });
  const selection = { all: false as const, selectors: chosen.map((address) => ({ kind: 'address' as const, address: address as PciAddress })) };
  const allowed = oracle ?? writable(before, chosen);
  const report = await sut.prepare(selection, { allowBootGpu }).catch((e: Error) => e);
  const checkWrites = (): void => {
    for (const w of attempted) for (const addr of w.match(ADDRESS) ?? []) expect(allowed, w).toContain(addr);
  };
  checkWrites();
  if (report instanceof Error) {
    expect(attempted).toEqual([]); // refusals happen before any write
    return;
  }
  // One injected fault at most, and it fails one write only: whatever fails, the rollback's own writes
  // succeed, so a rollback that fails, or a run that fails without the fault, is a defect.
  const prepareWrites = attempted.length;
  const faultIn = (from: number, to: number): boolean => failAt !== undefined && failAt > from && failAt <= to;
  const outcomes = report.outcomes.map((o) => o.outcome);
  if (!outcomes.every((o) => o === 'prepared' || o === 'already')) {
    expect(faultIn(0, prepareWrites), `prepare failed without the injected fault: ${JSON.stringify(report.outcomes)}`).toBe(true);
    expect(outcomes.every((o) => o === 'rolled_back' || o === 'prepared' || o === 'already'), JSON.stringify(report.outcomes)).toBe(true);
    const now = pciState(kernel);
    for (const o of report.outcomes.filter((x) => x.outcome === 'rolled_back')) {
      for (const f of before.functions.filter((x) => x.iommuGroup === o.group)) expect(now[f.address], `rollback of ${f.address}`).toEqual(initial[f.address]);
    }
    return;
  }
  // Release after a successful prepare: exactly the state before prepare, for every function; a release
  // that the fault fails is rolled back to exactly the state after prepare.
  const afterPrepare = pciState(kernel);
  const released = await sut.release(selection);
  checkWrites();
  const rolledBack = released.outcomes.filter((o) => o.outcome === 'rolled_back');
  // The fault fails one group's release (that group goes back to how prepare left it); every other group is released.
  expect(rolledBack.length, JSON.stringify(released.outcomes)).toBe(faultIn(prepareWrites, attempted.length) ? 1 : 0);
  expect(released.outcomes.every((o) => o.outcome === 'released' || o.outcome === 'already' || o.outcome === 'rolled_back'), JSON.stringify(released.outcomes)).toBe(true);
  const now = pciState(kernel);
  const backOnVfio = new Set(rolledBack.map((o) => o.group));
  for (const f of before.functions) {
    const want = f.iommuGroup !== undefined && backOnVfio.has(f.iommuGroup) ? afterPrepare : initial;
    expect(now[f.address], `after release: ${f.address}`).toEqual(want[f.address]);
  }
}

const builtins = (await listBuiltinProfiles()).filter((n) => n !== 'bench-16gpu');

describe('handoff properties over the built-in profiles', () => {
  it.each(builtins)('%s: writes stay on the selected GPUs\u2019 card functions; rollback and release restore driver and override', { timeout: 120_000 }, async (name) => {
    const profile = await loadBuiltinProfile(name);
    const gpus = (await discoverHost(new SimulatedKernel(profile))).gpus.map((g) => g.fn.address);
    if (gpus.length === 0) return;
    await fc.assert(
      fc.asyncProperty(fc.subarray(gpus, { minLength: 1 }), fc.boolean(), fc.option(fc.integer({ min: 1, max: 12 }), { nil: undefined }), (chosen, allow, failAt) =>
        checkRun(profile, chosen, allow, failAt),
      ),
      { numRuns: 20 },
    );
  });
});

// ------------------------------------------------------------------ random hosts

const NATIVE: Record<string, string> = { '0x030000': 'nvidia', '0x030200': 'nvidia', '0x038000': 'amdgpu', '0x040300': 'snd_hda_intel', '0x0c0330': 'xhci_hcd', '0x108000': 'ccp', '0x020000': 'igb' };
const VENDORS = ['10de', '1002', '1022', '8086'];

interface FnSpec {
  readonly cls: string;
  readonly vendor: string;
  readonly bound: 'native' | 'vfio' | 'none';
  readonly override: 'unset' | 'vfio-pci' | 'none';
}

const fnSpec = (classes: string[]): fc.Arbitrary<FnSpec> =>
  fc.record({
    cls: fc.constantFrom(...classes),
    vendor: fc.constantFrom(...VENDORS),
    bound: fc.constantFrom('native' as const, 'native' as const, 'vfio' as const, 'none' as const),
    override: fc.constantFrom('unset' as const, 'unset' as const, 'vfio-pci' as const, 'none' as const),
  });

const hostArb = fc.record({
  gpuClass: fc.constantFrom('0x030000', '0x030200', '0x038000'),
  gpuVendor: fc.constantFrom('10de', '1002'),
  gpuBound: fc.constantFrom('native' as const, 'vfio' as const, 'none' as const),
  gpuOverride: fc.constantFrom('unset' as const, 'vfio-pci' as const),
  slotFns: fc.array(fnSpec(['0x040300', '0x0c0330', '0x108000']), { maxLength: 4 }),
  otherSlots: fc.array(fnSpec(['0x020000', '0x0c0330', '0x040300']), { maxLength: 2 }),
  linkTo: fc.array(fc.nat({ max: 3 }), { maxLength: 2 }),
  rootPortInGroup: fc.boolean(),
  hostBridgeInGroup: fc.boolean(),
  vfioLoaded: fc.boolean(),
});

type RandomHost = typeof hostArb extends fc.Arbitrary<infer T> ? T : never;

function buildHost(h: RandomHost): HostProfile {
  const devices: ProfileDevice[] = [];
  const group = 7;
  const mk = (address: string, s: FnSpec): ProfileDevice => {
    const native = NATIVE[s.cls]!;
    const driver = s.bound === 'native' ? native : s.bound === 'vfio' ? 'vfio-pci' : undefined;
    // vfio-pci only ever holds a device through driver_override (or ids=/new_id, modelled as no override).
    const override = s.override === 'unset' ? undefined : s.bound === 'vfio' ? 'vfio-pci' : s.override;
    return { address, class: s.cls, vendor: s.vendor, device: '1234', iommuGroup: group, nativeDriver: native, ...(driver ? { driver } : {}), ...(override ? { driverOverride: override } : {}) };
  };
  devices.push({ address: '0000:00:01.0', class: '0x060400', vendor: '8086', device: '1901', driver: 'pcieport', iommuGroup: h.rootPortInGroup ? group : 1 });
  devices.push({ address: '0000:00:00.0', class: '0x060000', vendor: '8086', device: '1900', iommuGroup: h.hostBridgeInGroup ? group : 0 });
  const gpu = mk('0000:01:00.0', { cls: h.gpuClass, vendor: h.gpuVendor, bound: h.gpuBound, override: h.gpuOverride });
  const slot = h.slotFns.map((s, i) => ({ ...mk(`0000:01:00.${i + 1}`, s), parent: '0000:00:01.0' }));
  const links = [...new Set(h.linkTo.filter((i) => i < slot.length))].map((i) => `consumer:pci:${slot[i]!.address}`);
  devices.push({ ...gpu, parent: '0000:00:01.0', ...(links.length ? { consumers: links } : {}), bars: [{ index: 0, start: '0xd0000000', size: '16M' }] });
  devices.push(...slot);
  h.otherSlots.forEach((s, i) => devices.push({ ...mk(`0000:0${i + 2}:00.0`, s), parent: '0000:00:01.0' }));
  const drivers = new Set(['pcieport', ...devices.map((d) => d.driver).filter((d): d is string => d !== undefined), ...Object.values(NATIVE)]);
  if (!h.vfioLoaded && !devices.some((d) => d.driver === 'vfio-pci')) drivers.delete('vfio-pci');
  else drivers.add('vfio-pci');
  return { name: 'random', kernelRelease: '6.12.41+deb13-amd64', loadedDrivers: [...drivers], availableModules: ['vfio-pci'], devices };
}

/** The oracle, from how the host was built (not from the code under test): the GPU, its same-vendor slot functions, its linked ones. */
function cardFunctions(h: RandomHost): Set<string> {
  const out = new Set<string>(['0000:01:00.0']);
  h.slotFns.forEach((s, i) => {
    if (s.vendor === h.gpuVendor || h.linkTo.includes(i)) out.add(`0000:01:00.${i + 1}`);
  });
  return out;
}

describe('handoff properties over random hosts', () => {
  it('writes stay on card functions of the selected group; rollback and release restore driver and override', { timeout: 240_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(hostArb, fc.boolean(), fc.option(fc.integer({ min: 1, max: 14 }), { nil: undefined }), (h, allow, failAt) =>
        checkRun(buildHost(h), ['0000:01:00.0'], allow, failAt, cardFunctions(h)),
      ),
      { numRuns: 150 },
    );
  });
});
