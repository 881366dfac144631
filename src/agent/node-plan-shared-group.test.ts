/**
 * The agent's node plan when two GPUs share one IOMMU group (src/testing/host-fixtures.ts: two RTX 3090s
 * behind root ports without ACS, group 1). vfio hands out a group whole, so preparing the one GPU the
 * spec wants moves the other too; releasing that other GPU would take the wanted one back with it, and
 * the next pass would prepare it again.
 */
import { describe, expect, it } from 'vitest';
import { realClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import type { PciAddress } from '../core/pci-address.js';
import { HandoffEngine } from '../handoff/engine.js';
import { parseSelectors } from '../handoff/select.js';
import { discoverHost } from '../host/discover.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../state/journal.js';
import { parseProfile } from '../profiles/load.js';
import { TWO_GPUS_ONE_GROUP_YAML, twoGpusOneGroup } from '../testing/host-fixtures.js';
import { planNode, type NodePlanInput } from './node-plan.js';

const A = '0000:01:00.0' as PciAddress;
const B = '0000:02:00.0' as PciAddress;
const NOW = '2026-11-30T08:00:00.000Z';

/** The host after `prepare A` (group 1, with B and both audio functions, on vfio-pci) and its records. */
async function afterPrepareOfA(): Promise<Pick<NodePlanInput, 'snapshot' | 'records'>> {
  const kernel = new SimulatedKernel(twoGpusOneGroup());
  const store = new MemoryStateStore();
  const engine = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 100, writeTimeoutMs: 300 });
  await engine.prepare({ all: false, selectors: parseSelectors([A]) }, { allowBootGpu: false });
  return { snapshot: await discoverHost(kernel), records: await store.readRecords() };
}

describe('planNode: two GPUs in one IOMMU group', () => {
  it('the fixture: preparing A moved B too (both on vfio-pci, group 1 recorded)', async () => {
    const { snapshot, records } = await afterPrepareOfA();
    expect(snapshot.gpus.filter((g) => g.fn.iommuGroup === 1).map((g) => [g.fn.address, g.fn.driver])).toEqual([
      [A, 'vfio-pci'],
      [B, 'vfio-pci'],
    ]);
    expect([...records.keys()]).toEqual([1]);
  });

  it('a GPU that shares its group with a wanted GPU is not released: Releasing/SharesIommuGroup naming that GPU', async () => {
    const host = await afterPrepareOfA();
    const out = planNode({ ...host, spec: { gpus: [{ address: A, policy: 'p', resourceName: 'nvidia.com/GA102' }] }, inUse: new Set(), previous: undefined, now: NOW });
    expect(out.release).toEqual([]);
    expect(out.prepare).toEqual({ allowBootGpu: [], normal: [] });
    const byAddress = new Map(out.statuses.map((s) => [s.address, s]));
    expect(byAddress.get(A)).toMatchObject({ phase: 'Ready' });
    expect(byAddress.get(B)).toMatchObject({
      phase: 'Releasing',
      reason: 'SharesIommuGroup',
      message: `shares IOMMU group 1 with ${A}, which stays on vfio-pci (vfio hands out a group whole); released with it`,
    });
  });

  it('a pod holding the other GPU is named first: Releasing/InUse, not SharesIommuGroup', async () => {
    const host = await afterPrepareOfA();
    const out = planNode({ ...host, spec: { gpus: [{ address: A, policy: 'p' }] }, inUse: new Set([B]), holders: new Map([[B, 'vms/win11']]), previous: undefined, now: NOW });
    expect(out.release).toEqual([]);
    expect(out.statuses.find((s) => s.address === B)).toMatchObject({ phase: 'Releasing', reason: 'InUse', message: 'in use by pod vms/win11; released when the pod ends' });
  });

  it('the guard holds while the wanted GPU is still being prepared (a retry after a failure included)', async () => {
    const host = await afterPrepareOfA();
    const failures = new Map([[A, { reason: 'StepFailed', message: 'probe timed out' }]]);
    const out = planNode({ ...host, spec: { gpus: [{ address: A, policy: 'p' }] }, inUse: new Set(), failures, previous: undefined, now: NOW });
    expect(out.release).toEqual([]);
    expect(out.statuses.find((s) => s.address === B)).toMatchObject({ phase: 'Releasing', reason: 'SharesIommuGroup' });
  });

  it('once neither GPU is wanted, both are released in the same pass', async () => {
    const host = await afterPrepareOfA();
    const out = planNode({ ...host, spec: { gpus: [] }, inUse: new Set(), previous: undefined, now: NOW });
    expect([...out.release].sort()).toEqual([A, B]);
    for (const s of out.statuses.filter((x) => x.iommuGroup === 1)) expect(s).toMatchObject({ phase: 'Releasing' });
    expect(out.statuses.find((s) => s.address === B)?.reason).toBeUndefined();
  });

  it('a wanted GPU the verdict blocks does not hold its group: the other GPU is released', async () => {
    // The same host with a NIC of another vendor on igb in group 1 (behind 00:01.1), the GPUs and their
    // audio already on vfio-pci and group 1 recorded: A is blocked (FOREIGN_DEVICE) and is never prepared.
    const yaml = TWO_GPUS_ONE_GROUP_YAML.replace(/driver: (nvidia|snd_hda_intel)/g, 'driver: vfio-pci').replace('loadedDrivers: [', 'loadedDrivers: [vfio-pci, igb, ') +
      '  - { address: "0000:03:00.0", parent: "0000:00:01.1", class: "0x020000", vendor: "8086", device: "1533", driver: igb, iommuGroup: 1 }\n';
    const snapshot = await discoverHost(new SimulatedKernel(parseProfile(yaml, 'with-nic')));
    const records = new Map([[1, { group: 1, gpus: [A, B], originalDrivers: {}, framebuffers: [], vtconsoles: [] }]]);
    const out = planNode({ snapshot, records, spec: { gpus: [{ address: A, policy: 'p' }] }, inUse: new Set(), previous: undefined, now: NOW });
    expect(out.statuses.find((s) => s.address === A)).toMatchObject({ phase: 'Failed', reason: 'ForeignDevice' });
    expect(out.release).toEqual([B]);
    expect(out.statuses.find((s) => s.address === B)?.reason).toBeUndefined();
  });
});
