import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { PciAddress } from '../../../src/core/pci-address.js';
import { HandoffEngine } from '../../../src/handoff/engine.js';
import { discoverHost } from '../../../src/host/discover.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../../../src/state/journal.js';

const PROFILES = ['server-aspeed-4xh100', 'workstation-efifb', 'qemu-vga-hda'];

describe('planning invariants (property)', () => {
  it.each(PROFILES)('%s: prepare of any subset writes only inside the selected GPUs\u2019 groups, and release restores the drivers', async (name) => {
    const profile = await loadBuiltinProfile(name);
    const snap = await discoverHost(new SimulatedKernel(profile));
    const gpus = snap.gpus.map((g) => g.fn.address);
    await fc.assert(
      fc.asyncProperty(fc.subarray(gpus, { minLength: 1 }), fc.boolean(), async (chosen, allowBoot) => {
        const kernel = new SimulatedKernel(profile);
        const sut = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger, verifyTimeoutMs: 100 });
        const before = await discoverHost(kernel);
        const groups = new Set(chosen.map((a) => before.gpus.find((g) => g.fn.address === a)!.fn.iommuGroup));
        const allowed = new Set<string>(before.functions.filter((f) => groups.has(f.iommuGroup)).map((f) => f.address));
        const fbs = before.framebuffers.filter((fb) => fb.owner && chosen.includes(fb.owner.address)).map((fb) => fb.device);
        const report = await sut
          .prepare({ all: false, selectors: chosen.map((address) => ({ kind: 'address' as const, address: address as PciAddress })) }, { allowBootGpu: allowBoot })
          .catch((e: Error) => e);
        for (const w of kernel.writeLog) {
          if (w.kind === 'modprobe') continue;
          const addr = /\d{4}:[0-9a-f]{2}:[0-9a-f]{2}\.\d/.exec(`${w.path} ${w.value}`)?.[0];
          if (addr) expect(allowed.has(addr)).toBe(true);
          else if (w.path.startsWith('sys/bus/platform/')) expect(fbs).toContain(w.value);
          else expect(w.path).toMatch(/^sys\/class\/vtconsole\/vtcon\d+\/bind$/);
        }
        if (report instanceof Error) {
          // Refusals happen before any write.
          expect(kernel.writeLog.filter((w) => w.kind === 'write')).toEqual([]);
          return;
        }
        // Never a half-bound group: every touched group is complete on vfio-pci.
        const after = await discoverHost(kernel);
        for (const g of groups) {
          const eps = after.functions.filter((f) => f.iommuGroup === g && !f.isBridge);
          expect(eps.every((f) => f.driver === 'vfio-pci')).toBe(true);
          expect(after.vfioGroupNodes).toContain(g!);
        }
        await sut.release({ all: false, selectors: chosen.map((address) => ({ kind: 'address' as const, address: address as PciAddress })) });
        const back = await discoverHost(kernel);
        for (const f of before.functions) {
          if (f.driver === 'vfio-pci') continue;
          const now = back.functions.find((x) => x.address === f.address)!;
          // A function goes back to its original driver; one that had none gets what the host probes (or none).
          if (f.driver !== undefined) expect(now.driver).toBe(f.driver);
          else expect(now.driver).not.toBe('vfio-pci');
        }
      }),
      { numRuns: 25 },
    );
  });
});
