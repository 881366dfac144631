import { describe, expect, it } from 'vitest';
import { runOperatorApiserverBench } from '../../../src/bench/operator-apiserver-bench.js';
import { controlPlaneBinaries } from '../../support/control-plane.js';

const bins = controlPlaneBinaries();

// The real-API-server operator benchmark at a small scale (npm run bench runs 1,000 nodes), so it cannot rot.
describe.skipIf(bins.skip)(`${runOperatorApiserverBench.name}${bins.skip ? ` (skipped: ${bins.skip})` : ''}`, () => {
  it('converges on the real API server with the operator as its ServiceAccount, ≤ 3 writes per node, none failed', async () => {
    const r = await runOperatorApiserverBench({ nodes: 20, timeoutMs: 120_000 });
    expect(r['apiserver.skipped']).toBeUndefined();
    expect(r['apiserver.writes_per_node_avg']).toBe(2); // spec + ready label, as on the fake server
    expect(r['apiserver.writes_per_node_max']).toBeLessThanOrEqual(3);
    expect(r['apiserver.failed_writes']).toBe(0);
    expect(r['apiserver.operator_requests']).toBeGreaterThan(40);
  }, 300_000);
});
