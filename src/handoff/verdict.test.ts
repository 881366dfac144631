/**
 * IOMMU_OFF advice per platform (kernel.md §3.6): each names the firmware switch and boot parameter of its own
 * platform only; a host whose platform could not be told gets the advice for all of them.
 */
import { describe, expect, it } from 'vitest';
import { iommuOffAdvice } from './verdict.js';

describe('iommuOffAdvice', () => {
  it('unknown platform: VT-d, AMD-Vi and the arm64 SMMU are all named, with intel_iommu=on for Intel hosts', () => {
    expect(iommuOffAdvice('unknown')).toBe(
      'the IOMMU is off: enable it in firmware (Intel VT-d / AMD-Vi; arm64: the SMMU) and boot with intel_iommu=on on Intel hosts',
    );
  });
  it('each known platform gets only its own advice', () => {
    expect(iommuOffAdvice('intel')).toBe('the IOMMU is off: enable VT-d in firmware and boot with intel_iommu=on');
    expect(iommuOffAdvice('amd')).toMatch(/^the IOMMU is off: enable AMD-Vi \(IOMMU\) in firmware; amd_iommu is on by default, so remove amd_iommu=off if set$/);
    expect(iommuOffAdvice('arm-smmu')).toMatch(/^the IOMMU is off: on arm64 PCIe devices are isolated by the Arm SMMU/);
    expect(iommuOffAdvice('arm-smmu')).not.toMatch(/intel_iommu|VT-d|AMD-Vi/);
  });
});
