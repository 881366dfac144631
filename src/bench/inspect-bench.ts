import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { realClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { HandoffEngine } from '../handoff/engine.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { materialiseProfile } from '../profiles/materialise.js';
import { NodeHost } from '../sysfs/node-host.js';
import type { HostPort } from '../sysfs/port.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../state/journal.js';

/** `inspect` (discovery + verdicts + plans) on the 16-GPU host, over the simulated kernel and over a materialised tree. */
export async function runInspectBench(opts: { iterations?: number } = {}): Promise<Record<string, number | string>> {
  const iterations = opts.iterations ?? 200;
  const profile = await loadBuiltinProfile('bench-16gpu');
  const out: Record<string, number | string> = {};

  const sim = new SimulatedKernel(profile);
  const simStats = await measure(sim, iterations);
  out['inspect.simulated.ms_p50'] = simStats.p50;
  out['inspect.simulated.ms_p99'] = simStats.p99;

  const dir = await mkdtemp(join(tmpdir(), 'vfio-handoff-bench-'));
  try {
    await materialiseProfile(profile, dir);
    const host = new NodeHost({ root: dir });
    const treeStats = await measure(host, iterations);
    out['inspect.tree.ms_p50'] = treeStats.p50;
    out['inspect.tree.ms_p99'] = treeStats.p99;
    const before = host.stats().reads;
    const report = await new HandoffEngine({ host, store: new MemoryStateStore(), clock: realClock, logger: silentLogger }).inspect({ allowBootGpu: false });
    const reads = host.stats().reads - before;
    out['inspect.tree.gpus'] = report.assessments.length;
    out['inspect.tree.reads_total'] = reads;
    out['inspect.tree.reads_per_gpu'] = Math.round((reads / report.assessments.length) * 10) / 10;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}

async function measure(host: HostPort, iterations: number): Promise<{ p50: number; p99: number }> {
  const engine = new HandoffEngine({ host, store: new MemoryStateStore(), clock: realClock, logger: silentLogger });
  for (let i = 0; i < 10; i++) await engine.inspect({ allowBootGpu: false }); // warm-up (JIT, fs caches)
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await engine.inspect({ allowBootGpu: false });
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const q = (p: number): number => Math.round(samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]! * 100) / 100;
  return { p50: q(0.5), p99: q(0.99) };
}
