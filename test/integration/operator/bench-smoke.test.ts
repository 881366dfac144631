import { describe, expect, it } from 'vitest';
import { runOperatorBench } from '../../../src/bench/operator-bench.js';

// The benchmark at a small scale (OPERATOR_BENCH_NODES=1000 for the real figures), so it cannot rot.
describe(runOperatorBench.name, () => {
  it('converges with at most 3 operator writes per node', async () => {
    const nodes = Number(process.env['OPERATOR_BENCH_NODES'] ?? 50);
    const r = await runOperatorBench({ nodes, timeoutMs: 60_000 });
    if (process.env['OPERATOR_BENCH_NODES']) console.log(JSON.stringify(r, null, 1));
    expect(r['operator.writes_per_node_max']).toBeLessThanOrEqual(3);
    expect(r['operator.writes_per_node_avg']).toBe(2); // spec + ready label, nothing twice
    expect(r['operator.failed_writes']).toBe(0);
    expect(r['operator.converge_s']).toBeLessThanOrEqual(30);
  }, 120_000);

  it('a slow watch (events 300 ms behind the writes) costs no conflicting write: the operator reads its own writes', async () => {
    // Finalizer then status, status then status: each watch event arrives after the next write has returned.
    const r = await runOperatorBench({ nodes: 20, timeoutMs: 60_000, watchDelayMs: 300 });
    expect(r['operator.failed_writes']).toBe(0);
    expect(r['operator.writes_per_node_max']).toBeLessThanOrEqual(3);
  }, 120_000);
});
