import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { discoverHost, iommuPlatform } from '../../../src/host/discover.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import type { HostProfile } from '../../../src/profiles/profile.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

/** Issue 9 kind 4: advice that fits the platform (arm64 SMMU vs x86 VT-d/AMD-Vi) and the kernel (reset_method since 5.15). */
async function inspect(profile: string | HostProfile, allowBootGpu = false) {
  const p = typeof profile === 'string' ? await loadBuiltinProfile(profile) : profile;
  const sut = new HandoffEngine({ host: new SimulatedKernel(p), store: new MemoryStateStore(), clock: realClock, logger: silentLogger });
  return sut.inspect({ allowBootGpu });
}

describe('IOMMU advice by platform', () => {
  it('Raspberry Pi 5 (arm64, no IOMMU): IOMMU_OFF about the SMMU, never intel_iommu', async () => {
    const r = await inspect('rpi5-no-iommu');
    expect(r.snapshot.platform).toBe('arm-smmu');
    const a = r.assessments.find((x) => x.gpu.fn.address === '0001:01:00.0')!;
    expect(a.reasons.map((x) => x.code)).toEqual(['IOMMU_OFF']);
    expect(a.reasons[0]!.message).toMatch(/SMMU/);
    expect(a.reasons[0]!.message).not.toMatch(/intel_iommu|VT-d|AMD-Vi/);
  });

  it('Grace (arm64, SMMU on, PCI domain 0009): the GPU without a group is NO_IOMMU_GROUP with SMMU advice, not IOMMU_OFF', async () => {
    const r = await inspect('grace-domain-0009-no-group');
    expect(r.snapshot.iommuEnabled).toBe(true);
    expect(r.snapshot.platform).toBe('arm-smmu');
    const a = r.assessments.find((x) => x.gpu.fn.address === '0009:01:00.0')!;
    expect(a.verdict).toBe('blocked');
    expect(a.reasons.map((x) => x.code)).toEqual(['NO_IOMMU_GROUP']);
    expect(a.reasons[0]!.message).toMatch(/SMMU does not cover PCI domain 0009/);
  });

  it('x86 hosts get VT-d / AMD-Vi advice by CPU vendor', async () => {
    const amd = await inspect('iommu-off');
    expect(amd.snapshot.platform).toBe('amd');
    expect(amd.assessments[0]!.reasons[0]!.message).toMatch(/AMD-Vi/);
    expect(amd.assessments[0]!.reasons[0]!.message).not.toMatch(/SMMU|intel_iommu/);
    const intel = await inspect({ ...(await loadBuiltinProfile('iommu-off')), cpu: 'intel' });
    expect(intel.assessments[0]!.reasons[0]!.message).toMatch(/VT-d.*intel_iommu=on/);
  });

  it.each([
    [['dmar0', 'dmar1'], undefined, undefined, 'intel'],
    [['ivhd0'], undefined, undefined, 'amd'],
    [['smmu3.0x0000000011000000'], '6.8.0-51-generic', undefined, 'arm-smmu'],
    [[], '6.1.0-28-arm64', undefined, 'arm-smmu'],
    [[], '6.8.0-51-generic', 'processor\t: 0\nvendor_id\t: GenuineIntel\n', 'intel'],
    [[], '6.8.0-51-generic', 'processor\t: 0\nCPU implementer\t: 0x41\n', 'arm-smmu'],
    [[], '6.8.0-51-generic', undefined, 'unknown'],
  ] as const)('iommuPlatform(%j, %s, cpuinfo) = %s', (units, release, cpuinfo, want) => {
    expect(iommuPlatform(units, release, cpuinfo)).toBe(want);
  });
});

describe('reset method advice by kernel', () => {
  it('kernels older than 5.15 have no reset_method file: RESET_METHOD_UNKNOWN, not NO_RESET_METHOD', async () => {
    const base = await loadBuiltinProfile('server-aspeed-4xh100');
    const old = await inspect({ ...base, kernelRelease: '5.10.0-28-amd64' });
    const gpu = old.assessments.find((a) => a.gpu.fn.address === '0000:18:00.0')!;
    expect(gpu.gpu.fn.resetMethods).toEqual([]); // the file does not exist there
    expect(gpu.warnings.map((w) => w.code)).toContain('RESET_METHOD_UNKNOWN');
    expect(gpu.warnings.map((w) => w.code)).not.toContain('NO_RESET_METHOD');
    expect(gpu.warnings.find((w) => w.code === 'RESET_METHOD_UNKNOWN')!.message).toMatch(/unknown/);
    // The same host on 5.15: the methods are listed, no warning at all.
    const now = await inspect({ ...base, kernelRelease: '5.15.0-119-generic' });
    const same = now.assessments.find((a) => a.gpu.fn.address === '0000:18:00.0')!;
    expect(same.gpu.fn.resetMethods.length).toBeGreaterThan(0);
    expect(same.warnings.map((w) => w.code)).not.toContain('RESET_METHOD_UNKNOWN');
  });

  it('a 5.15+ kernel without any reset method warns NO_RESET_METHOD (T4 names the kernel quirk)', async () => {
    const base = await loadBuiltinProfile('server-aspeed-4xh100');
    const t4: HostProfile = { ...base, devices: base.devices.map((d) => (d.address === '0000:18:00.0' ? { ...d, device: '1eb8', resetMethods: [] } : d)) };
    const a = (await inspect(t4)).assessments.find((x) => x.gpu.fn.address === '0000:18:00.0')!;
    const w = a.warnings.find((x) => x.code === 'NO_RESET_METHOD')!;
    expect(w.message).toMatch(/quirk_nvidia_no_bus_reset/);
    const snap = await discoverHost(new SimulatedKernel(t4));
    expect(snap.gpus.find((g) => g.fn.address === '0000:18:00.0')!.fn.resetMethods).toEqual([]);
  });
});
