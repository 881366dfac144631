import { describe, expect, it } from 'vitest';
import { KUBELET_RESOURCE_NAME_CASES } from '../../test/support/resource-name-cases.js';
import { extendedResourceNameProblem, isExtendedResourceName, pciResourceEnvVar } from './resource-name.js';

describe('the resource-name rule (kubelet IsExtendedResourceName)', () => {
  it.each(KUBELET_RESOURCE_NAME_CASES.map(([name, valid]) => [name.length > 40 ? `${name.slice(0, 37)}…(${name.length})` : name, name, valid] as const))(
    '%s → kubelet says valid=%s',
    (_label, name, valid) => {
      expect(isExtendedResourceName(name)).toBe(valid);
      expect(extendedResourceNameProblem(name) === undefined).toBe(valid);
    },
  );

  it('names the reason', () => {
    expect(extendedResourceNameProblem(`example.com/${'a'.repeat(64)}`)).toMatch(/1-63 characters/);
    expect(extendedResourceNameProblem('examplekubernetes.io/gpu')).toMatch(/kubernetes\.io\//);
  });
});

describe(pciResourceEnvVar.name, () => {
  it('maps case and . vs _ differences to one variable (the clash the operator and plugin refuse)', () => {
    expect(pciResourceEnvVar('example.com/gpu.a')).toBe(pciResourceEnvVar('example.com/GPU_A'));
    expect(pciResourceEnvVar('example.com/gpu-a')).not.toBe(pciResourceEnvVar('example.com/gpu_a'));
  });
});
