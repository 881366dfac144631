import { defineConfig } from 'vitest/config';

/**
 * The tests StrykerJS runs against each mutant of the decision core (stryker.config.mjs): the in-process
 * unit and engine tests. Tests that spawn the built CLI (dist/) or talk to a fake API server cannot see a
 * mutant in src/ and would only cost time, so they are left out here; `npm test` still runs them.
 */
export default defineConfig({
  test: {
    include: [
      'src/**/*.test.ts',
      'test/integration/engine/**/*.test.ts',
      'test/integration/host/**/*.test.ts',
      'test/integration/agent/node-agent.test.ts',
    ],
    // Property runs (plan-invariants: 8 s for 3 tests) would be repeated for every covered mutant; they and
    // the sysfs tests of code outside the mutated core stay in `npm test` only.
    exclude: ['src/sysfs/node-host.test.ts', 'src/sysfs/paths.test.ts', 'test/integration/engine/plan-invariants.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
  },
});
