import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../core/errors.js';
import { fn } from '../../test/support/deviceplugin-snapshots.js';
import {
  compileResourceConfig,
  defaultResourceName,
  extendedResourceNameProblem,
  isExtendedResourceName,
  nvidiaStyleName,
  overrideFor,
  pciResourceEnvVar,
  socketFileName,
  assertSocketPathFits,
  MAX_SOCKET_PATH_BYTES,
} from './resources.js';

describe(nvidiaStyleName.name, () => {
  it.each([
    ['TU104GL [Tesla T4]', 'TU104GL_TESLA_T4'],
    ['GA102 [GeForce RTX 3090]', 'GA102_GEFORCE_RTX_3090'],
    ['AD102GL [L40S]', 'AD102GL_L40S'],
    ['GH100 [H100 SXM5 80GB]', 'GH100_H100_SXM5_80GB'],
    ['GP104GL [Tesla P4/P6]', 'GP104GL_TESLA_P4_P6'],
    ['GK110B [GeForce GTX 780 Ti 3.5GB]', 'GK110B_GEFORCE_GTX_780_TI_3_5GB'],
    ['  Navi 21  [Radeon   RX 6800/6800 XT / 6900 XT] ', 'NAVI_21_RADEON_RX_6800_6800_XT___6900_XT'],
    ['TU102 [GeForce RTX 2080 Ti Rev. A]', 'TU102_GEFORCE_RTX_2080_TI_REV__A'],
  ])('%s → %s', (input, expected) => {
    expect(nvidiaStyleName(input)).toBe(expected);
  });
});

describe(extendedResourceNameProblem.name, () => {
  it.each([
    ['nvidia.com/TU104GL_Tesla_T4', true],
    ['nvidia.com/GA102_GEFORCE_RTX_3090', true],
    ['handoff.dev/10de-2204', true],
    ['example.com/gpu-a', true],
    ['gpu', false], // native: no domain
    ['kubernetes.io/gpu', false],
    ['requests.nvidia.com/gpu', false],
    ['Nvidia.com/gpu', false], // upper-case domain
    ['nvidia_com/gpu', false],
    ['nvidia.com/', false],
    ['nvidia.com/_GPU', false],
    ['nvidia.com/GPU_', false],
    ['nvidia.com/a/b', false],
    [`nvidia.com/${'A'.repeat(63)}`, true],
    [`nvidia.com/${'A'.repeat(64)}`, false],
  ])('%s valid=%s', (name, valid) => {
    expect(isExtendedResourceName(name)).toBe(valid);
  });
});

describe(defaultResourceName.name, () => {
  it('uses the vendor domain and the NVIDIA-style pci.ids name', () => {
    expect(defaultResourceName({ vendorId: '10de', deviceId: '1eb8' }, 'TU104GL [Tesla T4]')).toBe('nvidia.com/TU104GL_TESLA_T4');
    expect(defaultResourceName({ vendorId: '1002', deviceId: '73bf' }, 'Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]')).toBe(
      'amd.com/NAVI_21_RADEON_RX_6800_6800_XT___6900_XT',
    );
    expect(defaultResourceName({ vendorId: '8086', deviceId: '56a0' }, 'DG2 [Arc A770]')).toBe('intel.com/DG2_ARC_A770');
    expect(defaultResourceName({ vendorId: '1a03', deviceId: '2000' }, 'ASPEED Graphics Family')).toBe('handoff.dev/ASPEED_GRAPHICS_FAMILY');
  });

  it('falls back to handoff.dev/<vendor>-<device> without a usable name', () => {
    expect(defaultResourceName({ vendorId: '10de', deviceId: '2331' }, undefined)).toBe('handoff.dev/10de-2331');
    expect(defaultResourceName({ vendorId: '10de', deviceId: '2331' }, 'Foo Ltd.')).toBe('handoff.dev/10de-2331'); // ends in "_"
    expect(defaultResourceName({ vendorId: '10de', deviceId: '2331' }, '[]')).toBe('handoff.dev/10de-2331');
    expect(defaultResourceName({ vendorId: '10de', deviceId: '2331' }, 'X'.repeat(70))).toBe('handoff.dev/10de-2331');
  });
});

describe(compileResourceConfig.name, () => {
  const namer = compileResourceConfig({
    overrides: [
      { class: '0x0302', resourceName: 'example.com/compute' },
      { vendorDevice: '10DE:2204', resourceName: 'example.com/rtx3090' },
      { address: '0000:41:00.0', resourceName: 'example.com/the-one' },
    ],
  });

  it('prefers address over vendor:device over class', () => {
    expect(overrideFor(namer, fn({ address: '0000:41:00.0', deviceId: '2204', gpu: {} }))).toBe('example.com/the-one');
    expect(overrideFor(namer, fn({ address: '0000:01:00.0', deviceId: '2204', gpu: {} }))).toBe('example.com/rtx3090');
    expect(overrideFor(namer, fn({ address: '0000:02:00.0', deviceId: '20b0', classCode: 0x030200, gpu: {} }))).toBe('example.com/compute');
    expect(overrideFor(namer, fn({ address: '0000:02:00.0', deviceId: '20b0', classCode: 0x030000, gpu: {} }))).toBeUndefined();
  });

  it('matches class prefixes of 2, 4 and 6 hex digits', () => {
    const c = (cls: string): string | undefined =>
      overrideFor(compileResourceConfig({ overrides: [{ class: cls, resourceName: 'x.io/y' }] }), fn({ address: '0000:01:00.0', classCode: 0x030200 }));
    expect(c('0x03')).toBe('x.io/y');
    expect(c('0302')).toBe('x.io/y');
    expect(c('0x030200')).toBe('x.io/y');
    expect(c('0x0300')).toBeUndefined();
  });

  it.each([
    [{ vendorDevice: '10de:2204', resourceName: 'gpu' }],
    [{ vendorDevice: '10de:2204', resourceName: 'Example.com/gpu' }],
    [{ vendorDevice: '10de', resourceName: 'example.com/gpu' }],
    [{ address: '01:00.0', resourceName: 'example.com/gpu' }],
    [{ class: '0x3', resourceName: 'example.com/gpu' }],
    [{ address: '0000:01:00.0', class: '0x03', resourceName: 'example.com/gpu' }],
    [{ resourceName: 'example.com/gpu' }],
  ])('rejects %j', (override) => {
    expect(() => compileResourceConfig({ overrides: [override] })).toThrow(InvalidArgumentError);
  });
});

describe(pciResourceEnvVar.name, () => {
  it('follows KubeVirt: upper-case, / and . → _, - kept', () => {
    expect(pciResourceEnvVar('nvidia.com/TU104GL_Tesla_T4')).toBe('PCI_RESOURCE_NVIDIA_COM_TU104GL_TESLA_T4');
    expect(pciResourceEnvVar('example.com/gpu-a')).toBe('PCI_RESOURCE_EXAMPLE_COM_GPU-A');
    expect(pciResourceEnvVar('handoff.dev/10de-2204')).toBe('PCI_RESOURCE_HANDOFF_DEV_10DE-2204');
  });
});

describe(socketFileName.name, () => {
  const dirs = ['/var/lib/kubelet/device-plugins', '/var/lib/k0s/kubelet/device-plugins', '/var/snap/microk8s/common/var/lib/kubelet/device-plugins'];
  it('keeps a short name readable', () => {
    expect(socketFileName('nvidia.com/GA102_GEFORCE_RTX_3090')).toBe('vfio-handoff-nvidia.com_GA102_GEFORCE_RTX_3090.sock');
  });
  it.each(dirs)('gives every valid name up to kubelet\'s limit a socket path within 107 bytes in %s', (dir) => {
    // 58+ characters used to produce paths over the sun_path limit (Node truncates silently, kubelet's dial fails).
    const names = [58, 63, 75].map((n) => `example.com/${'a'.repeat(n - 12)}`);
    names.push(`${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(60)}.example.com/${'G'.repeat(63)}`);
    for (const name of names) {
      expect(isExtendedResourceName(name)).toBe(true);
      const file = socketFileName(name, dir);
      expect(Buffer.byteLength(`${dir}/${file}`)).toBeLessThanOrEqual(MAX_SOCKET_PATH_BYTES);
      expect(file).toMatch(/^vfio-handoff-[A-Za-z0-9._-]+\.sock$/);
    }
  });
  it('stays unique when shortened', () => {
    const a = socketFileName(`example.com/${'A'.repeat(60)}1`);
    const b = socketFileName(`example.com/${'A'.repeat(60)}2`);
    expect(a).not.toBe(b);
  });
  it('refuses a directory too long for any socket with a clear error', () => {
    expect(() => assertSocketPathFits(`/${'x'.repeat(120)}/kubelet.sock`)).toThrow(/bytes; the kernel allows 107/);
    expect(() => assertSocketPathFits('/var/lib/kubelet/device-plugins/kubelet.sock')).not.toThrow();
  });
});

describe('resource names: each rule and its message (kubelet IsExtendedResourceName)', () => {
  const domain244 = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(52)}`;
  it.each([
    ['gpu', /needs a domain prefix/],
    ['/gpu', /lower-case DNS-1123 subdomain/],
    ['kubernetes.io/gpu', /names containing "kubernetes\.io\/" are/],
    ['requests.example.com/gpu', /must not start with "requests\."/],
    ['example.com/a/b', /exactly one "\/"/],
    ['example.com/', /1-63 characters/],
    [`example.com/${'g'.repeat(64)}`, /1-63 characters/],
    ['example.com/-gpu', /alphanumeric, "-", "_" or "\."/],
    [`${domain244}e/gpu`, /the domain must be at most 244 characters/],
  ])('%s: %s', (name, why) => {
    expect(extendedResourceNameProblem(name)).toMatch(why);
  });

  it.each([`${domain244}/gpu`, `example.com/${'g'.repeat(63)}`, 'example.com/g'])('accepts the limits: %s', (name) => {
    expect(extendedResourceNameProblem(name)).toBeUndefined();
  });
});

describe('resource overrides: what a bad one is told, and what a good one matches', () => {
  it('an empty configuration has no matchers', () => {
    expect(compileResourceConfig({}).matchers).toEqual([]);
    expect(compileResourceConfig().matchers).toEqual([]);
  });

  it('names the override by its position and says what is wrong', () => {
    const ok = { vendorDevice: '10de:2204', resourceName: 'example.com/gpu' };
    expect(() => compileResourceConfig({ overrides: [ok, { vendorDevice: '10de:2204', resourceName: 'gpu' }] })).toThrow(
      new InvalidArgumentError('resource override #2: resource name "gpu" is invalid: needs a domain prefix (vendor-domain/resourcetype)'),
    );
    expect(() => compileResourceConfig({ overrides: [{ resourceName: 'example.com/gpu' }] })).toThrow(
      new InvalidArgumentError('resource override #1: give exactly one of address, vendorDevice, class'),
    );
    expect(() => compileResourceConfig({ overrides: [ok, ok, { class: '0x3', resourceName: 'example.com/gpu' }] })).toThrow(
      new InvalidArgumentError('resource override #3: class "0x3" must be 2, 4 or 6 hex digits (e.g. 0x0302)'),
    );
  });

  it.each(['zz0302', '0x0302zz', '0x03020000', ''])('refuses the class %j', (cls) => {
    expect(() => compileResourceConfig({ overrides: [{ class: cls, resourceName: 'example.com/gpu' }] })).toThrow(InvalidArgumentError);
  });

  it('each selector kind matches only its own functions', () => {
    const namer = compileResourceConfig({
      overrides: [
        { address: '0000:41:00.0', resourceName: 'example.com/by-address' },
        { vendorDevice: '10de:2204', resourceName: 'example.com/by-id' },
      ],
    });
    expect(overrideFor(namer, fn({ address: '0000:41:00.0', vendorId: '1002', deviceId: '0000', gpu: {} }))).toBe('example.com/by-address');
    // Same device id, other vendor: no match.
    expect(overrideFor(namer, fn({ address: '0000:01:00.0', vendorId: '1002', deviceId: '2204', gpu: {} }))).toBeUndefined();
    expect(overrideFor(namer, fn({ address: '0000:01:00.0', vendorId: '10de', deviceId: '2204', gpu: {} }))).toBe('example.com/by-id');
  });
});

