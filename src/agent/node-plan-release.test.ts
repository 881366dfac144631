/**
 * The agent's node plan for GPUs on their way back to the host (server-aspeed-l40s-vfio: L40S 0000:18:00.0 in
 * group 31 and 0000:3b:00.0 in group 45 on vfio-pci): the pod that holds one is named, and a GPU being released
 * keeps the resource name it was advertised under (the operator shows it under the policy it is leaving).
 * Fields that are unknown are absent from the status, not present as undefined (the API object carries only
 * what the agent knows).
 */
import { describe, expect, it } from 'vitest';
import { discoverHost } from '../host/discover.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { planNode } from './node-plan.js';

const NOW = '2026-11-25T12:00:00.000Z';
const EARLIER = '2026-11-25T11:00:00.000Z';
const record = (group: number) => [group, { group, gpus: [], originalDrivers: {}, framebuffers: [], vtconsoles: [] }] as const;

async function input() {
  const snapshot = await discoverHost(new SimulatedKernel(await loadBuiltinProfile('server-aspeed-l40s-vfio')));
  return { snapshot, spec: { gpus: [] }, records: new Map([record(31), record(45)]), now: NOW };
}

describe('planNode: GPUs being released', () => {
  it('a held GPU names the pod that holds it', async () => {
    const out = planNode({ ...(await input()), inUse: new Set(['0000:3b:00.0']), holders: new Map([['0000:3b:00.0', 'vms/win11']]), previous: undefined });
    expect(out.statuses.find((s) => s.address === '0000:3b:00.0')).toMatchObject({ phase: 'Releasing', reason: 'InUse', message: 'in use by pod vms/win11; released when the pod ends' });
  });

  it('a GPU being released keeps its own previous resource name; a GPU staying on the host does not inherit one', async () => {
    const previous = [
      { address: '0000:18:00.0', phase: 'Ready' as const, lastTransitionTime: EARLIER, resourceName: 'nvidia.com/L40S' },
      { address: '0000:3b:00.0', phase: 'Ready' as const, lastTransitionTime: EARLIER, resourceName: 'example.com/other' },
      { address: '0000:02:00.0', phase: 'Ready' as const, lastTransitionTime: EARLIER, resourceName: 'example.com/bmc' },
    ];
    const out = planNode({ ...(await input()), inUse: new Set(['0000:3b:00.0']), previous });
    const byAddress = new Map(out.statuses.map((s) => [s.address, s]));
    expect(byAddress.get('0000:18:00.0')).toMatchObject({ phase: 'Releasing', resourceName: 'nvidia.com/L40S' });
    expect(byAddress.get('0000:3b:00.0')).toMatchObject({ phase: 'Releasing', resourceName: 'example.com/other' });
    // The BMC's display (not ours, on its host driver) is Host: no resource name even though one is in `previous`.
    expect(byAddress.get('0000:02:00.0')?.phase).toBe('Host');
    expect(Object.keys(byAddress.get('0000:02:00.0')!)).not.toContain('resourceName');
  });

  it('a GPU released without a previous status of its own has no resource name and no reason: the keys are absent', async () => {
    const others = [{ address: '0000:02:00.0', phase: 'Host' as const, lastTransitionTime: EARLIER }];
    const out = planNode({ ...(await input()), inUse: new Set(), previous: others });
    const s = out.statuses.find((x) => x.address === '0000:18:00.0')!;
    expect(s.phase).toBe('Releasing');
    expect(Object.keys(s).sort()).toEqual(['address', 'driver', 'iommuGroup', 'lastTransitionTime', 'numaNode', 'phase']);
  });
});
