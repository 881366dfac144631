import { it } from 'vitest';
import { LAYOUTS } from './harness/qemu.js';
import { runScenario } from './harness/suite.js';
it('bench', async () => {
  const r = await runScenario('6.12', LAYOUTS.bootGpu, 'bench');
  console.log(JSON.stringify(r.report.steps[0]?.data));
});
