/**
 * What a handoff counts as the GPU's and touches: group members that are another group's companions stay
 * foreign; release gives back only functions the record says prepare took; the steps that force a driver
 * set the override first. Hosts: src/testing/host-fixtures.ts (two RTX 3090s behind root ports without
 * ACS) with the changes each case states.
 */
import { describe, expect, it } from 'vitest';
import type { PciAddress } from '../core/pci-address.js';
import { discoverHost } from '../host/discover.js';
import { parseProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { TWO_GPUS_ONE_GROUP_YAML } from '../testing/host-fixtures.js';
import { planRelease, restoreSteps } from './plan.js';
import { parseSelectors } from './select.js';
import { assessGpu } from './verdict.js';

const A = '0000:01:00.0' as PciAddress;

const snapshotOf = (yaml: string) => discoverHost(new SimulatedKernel(parseProfile(yaml, 'variant')));

describe('group members', () => {
  it('a function of this group that is the companion of a GPU in another group is foreign: the GPU is blocked', async () => {
    // The second card's GPU in group 3, its audio function left in group 1 with the first card.
    const yaml = TWO_GPUS_ONE_GROUP_YAML.replace(/(address: "0000:02:00\.0".*?iommuGroup: )1/s, '$13');
    const s = await snapshotOf(yaml);
    expect(s.gpus.find((g) => g.fn.address === '0000:02:00.0')?.fn.iommuGroup).toBe(3);
    const a = assessGpu(s, s.gpus.find((g) => g.fn.address === A)!, { allowBootGpu: false });
    expect(a.verdict).toBe('blocked');
    expect(a.reasons.map((r) => [r.code, r.message.split(' ')[0]])).toEqual([['FOREIGN_DEVICE', '0000:02:00.1']]);
  });
});

describe('release gives back only what the record says prepare took', () => {
  it('functions of the group on vfio-pci that the record does not list are left there', async () => {
    // Every function of group 1 on vfio-pci, but the record (prepare of A) lists only A.
    const s = await snapshotOf(TWO_GPUS_ONE_GROUP_YAML.replace(/driver: (nvidia|snd_hda_intel)/g, 'driver: vfio-pci').replace('loadedDrivers: [', 'loadedDrivers: [vfio-pci, '));
    const record = { group: 1, gpus: [A], originalDrivers: { [A]: 'nvidia' }, originalOverrides: { [A]: null }, framebuffers: [], vtconsoles: [] };
    const plan = planRelease(s, [assessGpu(s, s.gpus.find((g) => g.fn.address === A)!, { allowBootGpu: true })], new Map([[1, record]]));
    const touched = new Set(plan.groups.flatMap((g) => g.steps).flatMap((st) => ('address' in st ? [st.address] : [])));
    expect([...touched]).toEqual([A]);
    expect(plan.groups[0]?.steps.at(-1)).toEqual({ kind: 'verify-group', group: 1, expect: 'host', members: [A], nodeGone: false });
  });
});

describe('restoreSteps', () => {
  it('to vfio-pci without an override of its own: the override forces the probe, then it is cleared', () => {
    const fn = { address: A, driver: 'nvidia', driverOverride: undefined };
    expect(restoreSteps([fn], { [A]: { driver: 'vfio-pci', override: null } })).toEqual([
      { kind: 'set-override', address: A, driver: 'vfio-pci' },
      { kind: 'unbind-driver', address: A, driver: 'nvidia' },
      { kind: 'probe', address: A, expect: 'vfio-pci' },
      { kind: 'clear-override', address: A },
    ]);
  });
});

describe('parseSelectors', () => {
  it('vendor:device must be the whole selector: anything before it is not a GPU selector', () => {
    expect(() => parseSelectors(['zz10de:2204'])).toThrow('not a GPU selector: "zz10de:2204" (use a PCI address like 0000:65:00.0 or vendor:device like 10de:2331)');
  });
});
