// @ts-check
/**
 * Mutation testing of the decision core (`npm run test:mutation`), one area per Stryker run so each area
 * has its own score, threshold and incremental file (STRYKER_AREA selects it; the npm script runs all):
 *   handoff       readiness and verdicts, planning, selection
 *   executor      the executor's recovery/rollback decisions
 *   deviceplugin  Allocate and preferred allocation, device sets and resource names (with the device source's
 *                 allocation, health and revalidation in src/devices)
 *   operator      policy merge and status, the KubeVirt plan
 *   core          PCI address parsing, the agent's node plan
 * Incremental: test/mutation/<area>.incremental.json (committed) holds the last results, so a run re-tests
 * only mutants in changed code or covered by changed tests. The machine is shared: concurrency 2.
 */
export const AREAS = {
  handoff: ['src/handoff/verdict.ts', 'src/handoff/group.ts', 'src/handoff/plan.ts', 'src/handoff/select.ts'],
  // Its own run: its mutants (loop bounds, retries) are the ones that time out, and each costs a timeout.
  executor: ['src/handoff/executor.ts'],
  // The device source (src/devices) holds what Allocate and the device sets decide since both front ends share it.
  deviceplugin: [
    'src/deviceplugin/allocate.ts',
    'src/deviceplugin/preferred.ts',
    'src/deviceplugin/devices.ts',
    'src/deviceplugin/resources.ts',
    'src/devices/allocation.ts',
    'src/devices/health.ts',
    'src/devices/revalidate.ts',
  ],
  operator: ['src/operator/merge.ts', 'src/operator/status.ts', 'src/operator/kubevirt.ts'],
  core: ['src/core/pci-address.ts', 'src/agent/node-plan.ts'],
};
/**
 * Break thresholds (% of mutants killed or timed out), about one point under each area's score after its
 * complete run and the tests written from its survivors (2026-11-30, 2-core machine, concurrency 2):
 * handoff 98.08, executor 97.85, deviceplugin 95.67, operator 93.41, core 98.86. Every mutant still
 * surviving is in test/mutation/EQUIVALENT.md with why no test can kill it.
 */
export const BREAK = { handoff: 97, executor: 96, deviceplugin: 94, operator: 92, core: 97 };

const area = process.env.STRYKER_AREA ?? 'handoff';
if (!(area in AREAS)) throw new Error(`STRYKER_AREA must be one of ${Object.keys(AREAS).join(', ')}`);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts', related: true },
  plugins: ['@stryker-mutator/vitest-runner', './test/mutation/live-reporter.mjs'],
  checkers: [],
  coverageAnalysis: 'perTest',
  mutate: AREAS[/** @type {keyof typeof AREAS} */ (area)],
  ignoreStatic: true,
  incremental: true,
  incrementalFile: `test/mutation/${area}.incremental.json`,
  concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 2),
  // A mutant that loops forever is cut off after the tests' own time plus this margin. On the shared 2-core machine
  // a 2 s margin made mutants of plain strings "time out" (a timeout counts as detected, and restarts a vitest
  // worker, which costs more than the margin): 10 s keeps the score honest under load.
  timeoutMS: 10_000,
  timeoutFactor: 1.5,
  reporters: ['clear-text', 'progress-append-only', 'json', 'live'],
  jsonReporter: { fileName: `reports/mutation/${area}.json` },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true, reportMutants: true },
  tempDirName: `.stryker-tmp-${area}`,
  cleanTempDir: 'always',
  thresholds: { high: 90, low: 85, break: BREAK[/** @type {keyof typeof BREAK} */ (area)] },
  // Other areas' sandboxes and reports are not part of the project.
  ignorePatterns: ['.stryker-tmp*', 'reports', 'dist', '.cache'],
};
