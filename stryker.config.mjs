// @ts-check
/**
 * Mutation testing of the decision core (`npm run test:mutation`): readiness and verdicts, planning,
 * selection, the executor's recovery/rollback decisions, Allocate and preferred allocation, device sets and
 * resource names, PCI address parsing, policy merge and status, the KubeVirt plan and the agent's node plan.
 * Incremental: test/mutation/stryker-incremental.json (committed) holds the last run's results, so a run
 * re-tests only mutants in changed code or covered by changed tests. The machine is shared: concurrency 2.
 * @type {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
export default {
  packageManager: 'npm',
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts', related: true },
  plugins: ['@stryker-mutator/vitest-runner'],
  checkers: [],
  coverageAnalysis: 'perTest',
  mutate: [
    'src/handoff/verdict.ts',
    'src/handoff/group.ts',
    'src/handoff/plan.ts',
    'src/handoff/select.ts',
    'src/handoff/executor.ts',
    'src/deviceplugin/allocate.ts',
    'src/deviceplugin/preferred.ts',
    'src/deviceplugin/devices.ts',
    'src/deviceplugin/resources.ts',
    'src/core/pci-address.ts',
    'src/operator/merge.ts',
    'src/operator/status.ts',
    'src/operator/kubevirt.ts',
    'src/agent/node-plan.ts',
  ],
  ignoreStatic: true,
  incremental: true,
  incrementalFile: 'test/mutation/stryker-incremental.json',
  concurrency: 2,
  timeoutMS: 5_000,
  timeoutFactor: 3,
  reporters: ['clear-text', 'progress-append-only', 'json'],
  jsonReporter: { fileName: '.stryker-tmp/mutation.json' },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true, reportMutants: true },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  thresholds: { high: 90, low: 85, break: 85 },
};
