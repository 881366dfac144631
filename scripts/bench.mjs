// Runs every benchmark module in dist/bench (each exports one async run*Bench function), prints the figures and
// stores them, with the date and the machine, in bench/results/<date>[-<selection>].json (committed: the README's
// benchmark table cites these files). `npm run bench` builds first. Select with: npm run bench -- inspect plugin
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'dist', 'bench');
const wanted = process.argv.slice(2);
const files = readdirSync(dir).filter((f) => f.endsWith('-bench.js') && (wanted.length === 0 || wanted.some((w) => f.startsWith(w))));
const started = new Date();
const results = {};
const durations = {};
for (const f of files.sort()) {
  const mod = await import(pathToFileURL(join(dir, f)).href);
  const run = Object.entries(mod).find(([k, v]) => /^run.*Bench$/.test(k) && typeof v === 'function');
  if (!run) continue;
  process.stderr.write(`running ${f} …\n`);
  const name = f.replace(/-bench\.js$/, '');
  const t0 = Date.now();
  try {
    Object.assign(results, await run[1]());
  } catch (err) {
    // One failed benchmark is recorded as such; the others still run and are stored.
    results[`${name}.error`] = String(err instanceof Error ? err.message : err).slice(0, 500);
    process.exitCode = 1;
  }
  durations[name] = Math.round((Date.now() - t0) / 100) / 10;
  process.stderr.write(`  done in ${durations[name]} s\n`);
}
const width = Math.max(...Object.keys(results).map((k) => k.length));
for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(width)}  ${v}`);
const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  node: process.version,
};
const record = { date: started.toISOString(), machine, selection: wanted.length > 0 ? wanted : 'all', durationsS: durations, results };
console.log(JSON.stringify(record));
const out = join(root, 'bench', 'results');
mkdirSync(out, { recursive: true });
const file = join(out, `${started.toISOString().slice(0, 10)}${wanted.length > 0 ? `-${wanted.join('-')}` : ''}.json`);
writeFileSync(file, `${JSON.stringify(record, null, 1)}\n`);
process.stderr.write(`stored in ${file.slice(root.length + 1)}\n`);
