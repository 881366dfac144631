import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, NotFoundError } from '../core/errors.js';
import { allocatedDevices, checkClaimUid, parseGpuConfig, type ResourceClaim } from './claim.js';

const DRIVER = 'gpu.handoff.dev';
const cfg = (allowBootGpu: boolean) => ({ apiVersion: 'gpu.handoff.dev/v1alpha1', kind: 'GpuConfig', allowBootGpu });

function claim(config: object[], results = [{ request: 'gpu', driver: DRIVER, pool: 'n', device: 'gpu-0000-01-00-0' }]): ResourceClaim {
  return { metadata: { name: 'c', namespace: 'ns', uid: 'u' }, status: { allocation: { devices: { results, config: config as never } } } };
}

describe('GpuConfig (the opaque config a claim or class carries for gpu.handoff.dev)', () => {
  it('accepts the documented shape; allowBootGpu defaults to false', () => {
    expect(parseGpuConfig(cfg(true))).toEqual({ allowBootGpu: true });
    expect(parseGpuConfig({ apiVersion: 'gpu.handoff.dev/v1alpha1', kind: 'GpuConfig' })).toEqual({ allowBootGpu: false });
  });
  it.for([
    ['another kind', { apiVersion: 'gpu.handoff.dev/v1alpha1', kind: 'GpuConfg', allowBootGpu: true }],
    ['another version', { apiVersion: 'gpu.handoff.dev/v1', kind: 'GpuConfig' }],
    ['a misspelt field', { apiVersion: 'gpu.handoff.dev/v1alpha1', kind: 'GpuConfig', allowBootGPU: true }],
    ['a string for a boolean', { apiVersion: 'gpu.handoff.dev/v1alpha1', kind: 'GpuConfig', allowBootGpu: 'true' }],
    ['not an object', ['allowBootGpu']],
  ] as const)('refuses %s', ([, value]) => {
    expect(() => parseGpuConfig(value)).toThrow(InvalidArgumentError);
  });
});

describe('allocatedDevices', () => {
  it('only our driver\u2019s results; another driver\u2019s config is not ours to parse', () => {
    const c = claim(
      [{ source: 'FromClaim', opaque: { driver: 'other.example.com', parameters: { anything: 1 } } }],
      [
        { request: 'gpu', driver: DRIVER, pool: 'n', device: 'gpu-0000-01-00-0' },
        { request: 'nic', driver: 'other.example.com', pool: 'n', device: 'nic-0' },
      ],
    );
    expect(allocatedDevices(c, DRIVER)).toEqual([{ request: 'gpu', pool: 'n', device: 'gpu-0000-01-00-0', config: { allowBootGpu: false } }]);
  });
  it('claim config overrides class config, whatever their order in the list', () => {
    const c = claim([
      { source: 'FromClaim', requests: [], opaque: { driver: DRIVER, parameters: cfg(false) } },
      { source: 'FromClass', requests: [], opaque: { driver: DRIVER, parameters: cfg(true) } },
    ]);
    expect(allocatedDevices(c, DRIVER)[0]?.config.allowBootGpu).toBe(false);
  });
  it('a config for another request does not apply; a prioritized-list subrequest takes its request\u2019s config', () => {
    expect(allocatedDevices(claim([{ source: 'FromClaim', requests: ['other'], opaque: { driver: DRIVER, parameters: cfg(true) } }]), DRIVER)[0]?.config.allowBootGpu).toBe(false);
    const sub = claim([{ source: 'FromClaim', requests: ['gpu'], opaque: { driver: DRIVER, parameters: cfg(true) } }], [{ request: 'gpu/big', driver: DRIVER, pool: 'n', device: 'gpu-0000-01-00-0' }]);
    expect(allocatedDevices(sub, DRIVER)[0]?.config.allowBootGpu).toBe(true);
  });
  it.each(['..', '../../etc', 'a/b/c', 'GPU', '', 'gpu/..'])('a request name that is not a DNS label (%j) is refused: it becomes a directory of the metadata files', (request) => {
    expect(() => allocatedDevices(claim([], [{ request, driver: DRIVER, pool: 'n', device: 'gpu-0000-01-00-0' }]), DRIVER)).toThrow(/not a DNS label/);
  });
  it('an unallocated claim is an error', () => {
    expect(() => allocatedDevices({ metadata: { name: 'c', namespace: 'ns' } }, DRIVER)).toThrow(/not allocated/);
  });
  it('a claim re-created under the same name (another UID) is not the one kubelet asked for', () => {
    expect(() => checkClaimUid({ namespace: 'ns', name: 'c', uid: 'old' }, claim([]))).toThrow(NotFoundError);
  });
});
