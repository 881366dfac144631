#!/usr/bin/env node
// CI's mutation step (`npm run test:mutation:ci`): one incremental Stryker run per area of stryker.config.mjs,
// each starting from its committed baseline test/mutation/<area>.incremental.json, so only mutants in changed
// code (or covered by changed tests) are tested again. An area below its break threshold fails the step
// (Stryker exits non-zero); so does an area without a committed baseline, which would be a full run (tens of
// minutes per area on a 2-core machine) — commit the baseline `npm run test:mutation` writes.
// Each run rewrites its baseline, so after code changes a local `npm run test:mutation:ci` leaves the refreshed
// files in test/mutation/ to commit. The whole step has a budget (MUTATION_BUDGET_S, default 900 s): a run that
// would exceed it (baselines too stale: many mutants to re-test) is stopped and fails, saying so.
//
//   node scripts/mutation-ci.mjs [area...]   (default: every area)
//
// Prints per area the wall time and the mutant counts of its report; exit 1 when any area failed.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AREAS, BREAK } from '../stryker.config.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const areas = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(AREAS);
const concurrency = process.env.STRYKER_CONCURRENCY ?? String(Math.max(2, availableParallelism()));
const budgetMs = Number(process.env.MUTATION_BUDGET_S ?? 900) * 1000;
const stepStarted = Date.now();

/** Counts per status and the score as Stryker defines it: (killed + timeout) / (all valid mutants). */
function summary(area) {
  const report = JSON.parse(readFileSync(join(root, `reports/mutation/${area}.json`), 'utf8'));
  const counts = {};
  for (const file of Object.values(report.files)) for (const m of file.mutants) counts[m.status] = (counts[m.status] ?? 0) + 1;
  const detected = (counts.Killed ?? 0) + (counts.Timeout ?? 0);
  const valid = detected + (counts.Survived ?? 0) + (counts.NoCoverage ?? 0);
  return { counts, score: valid ? (100 * detected) / valid : 100 };
}

const rows = [];
let failed = false;
for (const area of areas) {
  if (!(area in AREAS)) throw new Error(`unknown area ${area}; areas: ${Object.keys(AREAS).join(', ')}`);
  const baseline = join(root, `test/mutation/${area}.incremental.json`);
  if (!existsSync(baseline)) {
    console.error(`mutation ${area}: no committed baseline ${baseline}: a full run does not fit CI; run STRYKER_AREA=${area} npx stryker run and commit the file`);
    failed = true;
    continue;
  }
  const started = Date.now();
  const left = budgetMs - (started - stepStarted);
  if (left <= 0) {
    console.error(`mutation ${area}: not run, the step's budget of ${budgetMs / 1000} s is spent`);
    rows.push({ area, seconds: 0, ok: false, break: BREAK[area] });
    failed = true;
    continue;
  }
  let over = false;
  const status = await new Promise((done) => {
    // Its own process group, so the budget stops Stryker's test-runner workers too.
    const child = spawn('npx', ['stryker', 'run'], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, STRYKER_AREA: area, STRYKER_CONCURRENCY: concurrency },
      detached: true,
    });
    const timer = setTimeout(() => {
      console.error(`mutation ${area}: over the budget of ${budgetMs / 1000} s for the whole step; the committed baselines are too stale. Run npm run test:mutation:ci and commit test/mutation/*.incremental.json`);
      over = true;
      process.kill(-child.pid, 'SIGTERM');
    }, left);
    child.on('exit', (code) => {
      clearTimeout(timer);
      done(over ? 'budget' : code);
    });
  });
  const seconds = Math.round((Date.now() - started) / 1000);
  const ok = status === 0;
  failed ||= !ok;
  const s = existsSync(join(root, `reports/mutation/${area}.json`)) ? summary(area) : undefined;
  rows.push({ area, seconds, ok, break: BREAK[area], ...(s && status !== 'budget' ? { score: s.score.toFixed(2), ...s.counts } : {}) });
}
console.log('\nmutation testing (incremental):');
console.table(rows);
process.exit(failed ? 1 : 0);
