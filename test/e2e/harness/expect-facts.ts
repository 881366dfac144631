/**
 * Reusable readings of guest facts, so the scenario tests state the kernel-level claim they make
 * ("the group is on vfio-pci", "nothing was written") in one line each.
 */
import { expect } from 'vitest';

import type { Facts, HandoffJson, InspectJson, VfioCheck } from './report.js';

export const BOOT_GPU = '0000:00:02.0';
export const BOOT_AUDIO = '0000:00:02.1';

/** What a handoff write can change on a PCI function: its driver link and its driver_override. */
export function bindingState(facts: Facts): Record<string, { driver: string | null; driverOverride: string | null }> {
  return Object.fromEntries(Object.entries(facts.pci).map(([a, f]) => [a, { driver: f.driver, driverOverride: f.driverOverride }]));
}

/** The console/framebuffer side of the host: what prepare may release and release may give back. */
export function consoleState(facts: Facts): {
  platformFramebuffers: Facts['platformFramebuffers'];
  procFb: Facts['procFb'];
  vtconsoles: Facts['vtconsoles'];
} {
  return { platformFramebuffers: facts.platformFramebuffers, procFb: facts.procFb, vtconsoles: facts.vtconsoles };
}

/** True when fbcon (the "frame buffer device" vtconsole) is bound, i.e. the console shows on a framebuffer. */
export function fbconBound(facts: Facts): boolean {
  return facts.vtconsoles.some((v) => v.name.includes('frame buffer device') && v.bind === '1');
}

/** The CLI's journal must be gone after every finished run: only records (and nothing in flight) remain. */
export function journalPresent(facts: Facts): boolean {
  return Object.keys(facts.stateDir).some((f) => f === 'journal.json');
}

export function inspectGpu(json: unknown, address: string): InspectJson['gpus'][number] {
  const gpu = (json as InspectJson | null)?.gpus?.find((g) => g.address === address);
  if (gpu === undefined) throw new Error(`inspect output has no GPU ${address}: ${JSON.stringify(json)?.slice(0, 2000)}`);
  return gpu;
}

export function codes(findings: readonly { code: string }[]): string[] {
  return findings.map((f) => f.code);
}

export function handoffResult(json: unknown, address: string): HandoffJson['results'][number] {
  const result = (json as HandoffJson | null)?.results?.find((r) => r.address === address);
  if (result === undefined) throw new Error(`handoff output has no result for ${address}: ${JSON.stringify(json)?.slice(0, 2000)}`);
  return result;
}

/**
 * What "handed off" means to a VMM: the group attached to a TYPE1v2 container, a device fd for every checked
 * function, and every one of their BARs read and (where vfio-pci offers it) mmapped through that fd.
 */
export function expectEveryBarMaps(check: VfioCheck, devices?: readonly string[]): void {
  expect(check.error, JSON.stringify(check)).toBeUndefined();
  expect(check.viable).toBe(true);
  expect(check.setIommu).toBe(0);
  if (devices !== undefined) expect(check.devices.map((d) => d.device)).toEqual(devices);
  expect(check.devices.length).toBeGreaterThan(0);
  for (const dev of check.devices) {
    expect(dev.error, dev.device).toBeUndefined();
    expect(dev.bars?.length ?? 0, `${dev.device} has no BARs`).toBeGreaterThan(0);
    for (const bar of dev.bars ?? []) {
      expect({ device: dev.device, bar: bar.index, read: bar.read, mmap: bar.mmap }).toEqual({
        device: dev.device,
        bar: bar.index,
        read: 'ok',
        mmap: bar.mmappable ? 'ok' : 'not-mmappable',
      });
    }
    expect(dev.ok, dev.device).toBe(true);
  }
  expect(check.ok).toBe(true);
}
