// Runs every benchmark module in dist/bench (each exports one async run*Bench function) and prints
// the figures. `npm run bench` builds first. Select with: npm run bench -- inspect plugin
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'bench');
const wanted = process.argv.slice(2);
const files = readdirSync(dir).filter((f) => f.endsWith('-bench.js') && (wanted.length === 0 || wanted.some((w) => f.startsWith(w))));
const results = {};
for (const f of files.sort()) {
  const mod = await import(pathToFileURL(join(dir, f)).href);
  const run = Object.entries(mod).find(([k, v]) => /^run.*Bench$/.test(k) && typeof v === 'function');
  if (!run) continue;
  process.stderr.write(`running ${f} …\n`);
  const t0 = Date.now();
  Object.assign(results, await run[1]());
  process.stderr.write(`  done in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}
const width = Math.max(...Object.keys(results).map((k) => k.length));
for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(width)}  ${v}`);
console.log(JSON.stringify({ node: process.version, results }));
