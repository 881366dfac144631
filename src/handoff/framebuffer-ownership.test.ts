/**
 * Which firmware framebuffers count as the GPU's own — the rule prepare acts on (it unbinds only those)
 * and the verdict reasons from (BAR_CLAIMED, CONSOLE_WILL_GO_DARK, SYSFB_REMOVED_BY_ANY_VGA,
 * FRAMEBUFFER_NOT_RESTORABLE). A framebuffer is the GPU's when a driver is bound to it and it lies in one
 * of the GPU's BARs (`owner`) or discovery listed it under the GPU (`gpu.framebuffers`, from sysfb's
 * parent link); either is enough. The hosts below are server-aspeed-4xh100 with the framebuffers,
 * iomem claims and consoles replaced, each case written out.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { PciAddress } from '../core/pci-address.js';
import { discoverHost } from '../host/discover.js';
import type { BarClaim, Framebuffer, Gpu, HostSnapshot } from '../host/model.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { planPrepare } from './plan.js';
import { assessGpu } from './verdict.js';

const H100 = '0000:18:00.0' as PciAddress; // 3D controller on nvidia, group 31
const ASPEED = '0000:02:00.0' as PciAddress; // the BMC's VGA, boot GPU
let base: HostSnapshot;
beforeAll(async () => {
  base = await discoverHost(new SimulatedKernel(await loadBuiltinProfile('server-aspeed-4xh100')));
});

const gpuAt = (address: PciAddress, framebuffers: readonly string[] = []): Gpu => ({ ...base.gpus.find((g) => g.fn.address === address)!, framebuffers });
const fb = (over: Partial<Framebuffer> = {}): Framebuffer => ({
  device: 'simple-framebuffer.0',
  type: 'simple-framebuffer',
  driver: 'simple-framebuffer',
  claim: 'simplefb',
  range: { start: 0x1000n, end: 0x1fffn },
  owner: { address: H100, bar: 1 },
  ...over,
});
const claim = (start: bigint, end: bigint): BarClaim => ({ address: H100, bar: 1, name: 'simplefb', start, end, firmwareFramebuffer: true });
const host = (framebuffers: Framebuffer[], barClaims: BarClaim[] = [], over: Partial<HostSnapshot> = {}): HostSnapshot => ({
  ...base,
  framebuffers,
  barClaims,
  iomemReadable: true,
  vtconsoles: [],
  ...over,
});
const codes = (s: HostSnapshot, gpu: Gpu) => {
  const a = assessGpu(s, gpu, { allowBootGpu: true });
  return [...a.reasons, ...a.warnings].map((f) => f.code);
};

describe('BAR_CLAIMED: a claim in the GPU\u2019s BAR that prepare cannot release', () => {
  const inBar = claim(0x1000n, 0x1fffn);
  it.each([
    ['bound, in the GPU\u2019s BAR, listed under the GPU', fb(), [fb().device], false],
    ['bound, in the GPU\u2019s BAR, not listed under it', fb(), [], false],
    ['bound, listed under the GPU, BAR owner unknown', fb({ owner: undefined }), [fb().device], false],
    ['bound, with no known range (the whole claim is its)', fb({ range: undefined }), [], false],
    ['no driver bound: nothing to unbind', fb({ driver: undefined }), [], true],
    ['bound but in another GPU\u2019s BAR and not listed under this one', fb({ owner: { address: '0000:3b:00.0' as PciAddress, bar: 1 } }), [], true],
  ])('%s → BAR_CLAIMED %s', (_what, framebuffer, listed, blocked) => {
    expect(codes(host([framebuffer], [inBar]), gpuAt(H100, listed)).includes('BAR_CLAIMED')).toBe(blocked);
  });

  it.each([
    ['touching the framebuffer\u2019s last byte', claim(0x1fffn, 0x2fffn), false],
    ['touching its first byte', claim(0x0n, 0x1000n), false],
    ['after it', claim(0x2000n, 0x2fffn), true],
    ['before it', claim(0x0n, 0x0fffn), true],
  ])('a claim %s → BAR_CLAIMED %s', (_what, c, blocked) => {
    expect(codes(host([fb()], [c]), gpuAt(H100)).includes('BAR_CLAIMED')).toBe(blocked);
  });
});

describe('CONSOLE_WILL_GO_DARK: the framebuffers prepare will unbind', () => {
  it.each([
    ['bound, in the GPU\u2019s BAR', fb(), [], true],
    ['bound, listed under the GPU, BAR owner unknown', fb({ owner: undefined }), [fb().device], true],
    ['no driver bound', fb({ driver: undefined }), [fb().device], false],
    ['bound, another GPU\u2019s', fb({ owner: { address: '0000:3b:00.0' as PciAddress, bar: 1 } }), [], false],
  ])('%s → %s', (_what, framebuffer, listed, dark) => {
    expect(codes(host([framebuffer]), gpuAt(H100, listed)).includes('CONSOLE_WILL_GO_DARK')).toBe(dark);
  });

  it('names every framebuffer and every claim, comma-separated', () => {
    const two = [fb(), fb({ device: 'efi-framebuffer.0', type: 'efi-framebuffer', driver: 'efi-framebuffer', claim: 'efifb' })];
    const a = assessGpu(host(two), gpuAt(H100), { allowBootGpu: true });
    expect(a.warnings.find((w) => w.code === 'CONSOLE_WILL_GO_DARK')?.message).toBe(
      'simple-framebuffer.0, efi-framebuffer.0 (simplefb, efifb) will be released: the local console goes dark',
    );
  });

  it('prepare plans the unbind of exactly those: listed-only and BAR-only framebuffers, not an unbound one', () => {
    const listedOnly = fb({ device: 'simple-framebuffer.1', owner: undefined });
    const barOnly = fb({ device: 'simple-framebuffer.2' });
    const unbound = fb({ device: 'simple-framebuffer.3', driver: undefined });
    const s = host([listedOnly, barOnly, unbound]);
    const gpu = gpuAt(H100, ['simple-framebuffer.1']);
    const plan = planPrepare(s, [assessGpu(s, gpu, { allowBootGpu: true })]);
    const unbinds = plan.groups.flatMap((g) => g.steps).filter((st) => st.kind === 'unbind-framebuffer');
    expect(unbinds).toEqual([
      { kind: 'unbind-framebuffer', device: 'simple-framebuffer.1', driver: 'simple-framebuffer' },
      { kind: 'unbind-framebuffer', device: 'simple-framebuffer.2', driver: 'simple-framebuffer' },
    ]);
  });
});

describe('kernel-specific framebuffer warnings', () => {
  const linux61 = { kernel: { release: '6.1.0-28-amd64', major: 6, minor: 1 } };

  it('SYSFB_REMOVED_BY_ANY_VGA (6.0–6.4) names every framebuffer that is not the GPU\u2019s', () => {
    const others = [fb({ owner: undefined }), fb({ device: 'efi-framebuffer.0', owner: undefined })];
    const a = assessGpu(host(others, [], linux61), gpuAt(ASPEED), { allowBootGpu: true });
    expect(a.warnings.find((w) => w.code === 'SYSFB_REMOVED_BY_ANY_VGA')?.message).toBe(
      'on kernel 6.1.0-28-amd64 binding any VGA-class GPU to vfio-pci also removes the boot framebuffer simple-framebuffer.0, efi-framebuffer.0: the boot console goes dark',
    );
  });

  it('FRAMEBUFFER_NOT_RESTORABLE is for VGA-class GPUs only: a 3D controller with its own framebuffer gets none', () => {
    expect(codes(host([fb()], [], linux61), gpuAt(H100))).not.toContain('FRAMEBUFFER_NOT_RESTORABLE');
    expect(codes(host([fb({ owner: { address: ASPEED, bar: 0 } })], [], linux61), gpuAt(ASPEED))).toContain('FRAMEBUFFER_NOT_RESTORABLE');
  });

  it('FRAMEBUFFER_NOT_RESTORABLE only where vfio-pci removes framebuffers (6.0 on): not on 5.15', () => {
    const linux515 = { kernel: { release: '5.15.0-126-generic', major: 5, minor: 15 } };
    expect(codes(host([fb({ owner: { address: ASPEED, bar: 0 } })], [], linux515), gpuAt(ASPEED))).not.toContain('FRAMEBUFFER_NOT_RESTORABLE');
  });

  it('BOOT_GPU_NOT_PERMITTED names every framebuffer in the boot GPU, comma-separated', () => {
    const a = assessGpu(host([]), gpuAt(ASPEED, ['efi-framebuffer.0', 'simple-framebuffer.0']), { allowBootGpu: false });
    expect(a.reasons.find((r) => r.code === 'BOOT_GPU_NOT_PERMITTED')?.message).toBe(
      '0000:02:00.0 is the boot GPU (firmware console on efi-framebuffer.0, simple-framebuffer.0); pass --allow-boot-gpu to take it',
    );
  });

  it('BOOT_GPU_NOT_PERMITTED for a boot GPU with no framebuffer in it says only "firmware console"', () => {
    const a = assessGpu(host([]), gpuAt(ASPEED), { allowBootGpu: false });
    expect(a.reasons.find((r) => r.code === 'BOOT_GPU_NOT_PERMITTED')?.message).toBe('0000:02:00.0 is the boot GPU (firmware console); pass --allow-boot-gpu to take it');
  });
});
