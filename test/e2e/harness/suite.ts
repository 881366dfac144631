/**
 * Glue between vitest and the test bed: one describe block per kernel series, one guest boot per block.
 *
 * Missing prerequisites: locally (not root) the suite is skipped with the reason in its title; under `CI=true`
 * it runs anyway and the boot fails loudly, because CI must never report a proof it did not make.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe } from 'vitest';

import { bootGuest, type BootResult, type MachineLayout } from './qemu.js';
import type { GuestReport } from './report.js';
import { CACHE_DIR, ensureCliBuilt, ensureKernel, isCi, KERNEL_SERIES, unmetPrerequisite, type Kernel, type KernelSeries } from './testbed.js';

export function kernelSuite(title: string, body: (series: KernelSeries) => void): void {
  const unmet = unmetPrerequisite();
  if (unmet !== undefined && !isCi()) {
    describe.skip(`${title} (skipped: ${unmet})`, () => {
      for (const series of KERNEL_SERIES) body(series);
    });
    return;
  }
  describe.each(KERNEL_SERIES)(`${title} — Debian kernel %s`, (series) => body(series));
}

/** Below vitest's 600 s hook timeout, so a hung guest fails with its serial log rather than a bare timeout. */
const DEFAULT_BOOT_MS = 540_000;

export interface ScenarioRun {
  readonly kernel: Kernel;
  readonly boot: BootResult;
  readonly report: GuestReport;
}

/**
 * Prepares the bed (cached), boots the scenario's guest and returns its report. Throws with the serial log's
 * tail when the guest produced no report, so a failed boot is diagnosable from the test output alone.
 */
export async function runScenario(
  series: KernelSeries,
  layout: MachineLayout,
  scenario: string,
  params?: Readonly<Record<string, string>>,
  opts: { timeoutMs?: number } = {},
): Promise<ScenarioRun> {
  const setupStart = Date.now();
  const kernel = ensureKernel(series);
  ensureCliBuilt();
  const setupMs = Date.now() - setupStart;
  const boot = await bootGuest({
    kernel,
    layout,
    scenario,
    timeoutMs: opts.timeoutMs ?? DEFAULT_BOOT_MS,
    ...(params !== undefined ? { params } : {}),
  });
  mkdirSync(CACHE_DIR, { recursive: true });
  appendFileSync(
    join(CACHE_DIR, 'timings.jsonl'),
    `${JSON.stringify({ at: new Date().toISOString(), scenario, series, kernel: kernel.release, setupMs, bootWallMs: boot.wallMs, runnerMs: boot.report?.runnerMs })}\n`,
  );
  console.log(`[e2e] ${scenario} on ${kernel.release}: qemu wall ${(boot.wallMs / 1000).toFixed(1)} s, setup ${(setupMs / 1000).toFixed(1)} s, log ${boot.outDir}/serial.log`);
  if (boot.report === undefined) {
    throw new Error(`guest for ${scenario} on ${kernel.release} wrote no report (timedOut=${String(boot.timedOut)}):\n${boot.serial.slice(-6000)}`);
  }
  if (!boot.report.complete) {
    console.log(`[e2e] ${scenario} runner did not complete: ${boot.report.error ?? '(cut off)'}`);
  }
  return { kernel, boot, report: boot.report };
}
