import { describe, expect, it } from 'vitest';
import { planNode } from '../../../src/agent/node-plan.js';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { computeDeviceSets } from '../../../src/deviceplugin/devices.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { planSteps } from '../../../src/handoff/plan.js';
import { parseSelectors } from '../../../src/handoff/select.js';
import { discoverHost } from '../../../src/host/discover.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

/** Issue 9 kind 5: SR-IOV VFs are listed, judged, prepared, released and advertised one by one; the PF stays SRIOV_VFS_ENABLED. */
const PF = '0000:00:02.0';
const READY_VF = '0000:00:02.1';
const VF = '0000:00:02.3';

async function setup() {
  const kernel = new SimulatedKernel(await loadBuiltinProfile('intel-igpu-sriov-vfs'));
  const store = new MemoryStateStore();
  const sut = new HandoffEngine({ host: kernel, store, clock: realClock, logger: silentLogger, verifyTimeoutMs: 200 });
  return { kernel, store, sut };
}

describe('Intel iGPU in SR-IOV mode with 7 VFs, one already on vfio-pci', () => {
  it('lists every VF with its own verdict and physfn; the PF stays SRIOV_VFS_ENABLED', async () => {
    const { sut } = await setup();
    const report = await sut.inspect({ allowBootGpu: true });
    expect(report.assessments.map((a) => a.gpu.fn.address)).toEqual([PF, ...[1, 2, 3, 4, 5, 6, 7].map((f) => `0000:00:02.${f}`)]);
    const pf = report.assessments.find((a) => a.gpu.fn.address === PF)!;
    expect(pf.reasons.map((r) => r.code)).toEqual(['SRIOV_VFS_ENABLED']);
    expect(pf.gpu.companions).toEqual([]);
    for (const a of report.assessments.filter((x) => x.gpu.fn.address !== PF)) {
      expect(a.gpu.fn.physfn).toBe(PF);
      expect(a.members.map((m) => m.fn.address)).toEqual([a.gpu.fn.address]); // its own group
    }
    expect(report.assessments.find((a) => a.gpu.fn.address === READY_VF)!.verdict).toBe('ready');
    expect(planSteps(report.plans.get(VF as never)!).map((s) => s.kind)).toEqual(['set-override', 'unbind-driver', 'probe', 'verify-group']);
  });

  it('prepare and release take one VF as a unit and touch nothing else', async () => {
    const { kernel, sut } = await setup();
    const sel = { all: false as const, selectors: parseSelectors([VF]) };
    expect((await sut.prepare(sel, { allowBootGpu: false })).outcomes.map((o) => o.outcome)).toEqual(['prepared']);
    const written = new Set(kernel.writeLog.filter((w) => w.kind === 'write').flatMap((w) => `${w.path} ${w.value}`.match(/0000:00:02\.\d/g) ?? []));
    expect([...written]).toEqual([VF]);
    expect((await sut.inspect({ allowBootGpu: false })).assessments.find((a) => a.gpu.fn.address === VF)!.verdict).toBe('ready');
    expect((await sut.release(sel)).outcomes.map((o) => o.outcome)).toEqual(['released']);
    const d = kernel.state().devices.find((x) => x.address === VF)!;
    expect([d.driver, d.driverOverride]).toEqual(['i915', undefined]);
    expect(kernel.state().devices.find((x) => x.address === PF)!.driver).toBe('i915');
  });

  it('the device plugin advertises the ready VF Healthy under its own resource; the agent reports it Ready', async () => {
    const { kernel } = await setup();
    const snapshot = await discoverHost(kernel);
    const sets = computeDeviceSets(snapshot, (g) => (g.fn.physfn ? 'intel.com/igpu-vf' : 'intel.com/igpu'));
    expect(sets.get('intel.com/igpu-vf')).toEqual([expect.objectContaining({ id: READY_VF, health: 'Healthy', group: 20 })]);
    expect(sets.get('intel.com/igpu')).toBeUndefined();
    const actions = planNode({
      snapshot,
      spec: { gpus: [{ address: READY_VF, resourceName: 'intel.com/igpu-vf' }, { address: VF, resourceName: 'intel.com/igpu-vf' }] } as never,
      inUse: new Set(),
      records: new Map(),
      previous: undefined,
      now: '2026-11-30T00:00:00Z',
    });
    expect(actions.statuses.find((s) => s.address === READY_VF)?.phase).toBe('Ready');
    expect(actions.prepare.normal).toEqual([VF]);
  });
});
