/**
 * The built CLI's runtime files as one tar, which the guest unpacks into a tmpfs and bind-mounts back over
 * `<repo>/dist` and `<repo>/node_modules/<pkg>` — the same paths, the same bytes, so the guest still runs
 * `node <repo>/dist/cli/main.js`.
 *
 * Why: under TCG every 9p lookup is a slow round trip, and Node's module resolution makes thousands of them
 * (measured: `--version` 15–18 s from 9p against under 1 s from tmpfs on a loaded 2-core host). One
 * sequential read of a tar is cheap. Packages the CLI does not load stay visible over 9p, so a lazy import
 * that the host-side trace missed still resolves, only slower.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { CACHE_DIR, CLI_PATH, PrerequisiteError, REPO_ROOT } from './testbed.js';

const REGISTER = join(REPO_ROOT, 'test', 'e2e', 'harness', 'trace-register.mjs');
/** Commands whose imports we trace on the host; all are read-only or print help. */
const TRACE_RUNS = [['--version'], ['inspect', '--json'], ['prepare', '--help'], ['release', '--help']];

interface LockPackage {
  readonly dependencies?: Record<string, string>;
  readonly optionalDependencies?: Record<string, string>;
}

/** `node_modules/a/node_modules/@s/b/lib/x.js` → `node_modules/a/node_modules/@s/b`. */
export function packageRoot(relPath: string): string | undefined {
  return /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)/.exec(relPath)?.[1];
}

/** Node's lookup of `dep` from package `from`: nested node_modules first, then each ancestor. */
function resolveInLock(lock: Record<string, LockPackage>, from: string, dep: string): string | undefined {
  let base = from;
  for (;;) {
    const candidate = `${base}/node_modules/${dep}`;
    if (lock[candidate] !== undefined) return candidate;
    const cut = base.lastIndexOf('/node_modules/');
    if (cut < 0) break;
    base = base.slice(0, cut);
  }
  return lock[`node_modules/${dep}`] !== undefined ? `node_modules/${dep}` : undefined;
}

/**
 * The packages to ship: every package the traced runs resolved, plus their dependency closure from
 * package-lock.json (CommonJS `require`s inside a package are invisible to the ESM resolve hook).
 */
export function cliPackages(tracedFiles: readonly string[], lock: Record<string, LockPackage>): string[] {
  const todo = [...new Set(tracedFiles.map(packageRoot).filter((p): p is string => p !== undefined))];
  const seen = new Set<string>();
  while (todo.length > 0) {
    const pkg = todo.pop()!;
    if (seen.has(pkg)) continue;
    seen.add(pkg);
    const entry = lock[pkg];
    for (const dep of Object.keys({ ...entry?.dependencies, ...entry?.optionalDependencies })) {
      const found = resolveInLock(lock, pkg, dep);
      if (found !== undefined && !seen.has(found)) todo.push(found);
    }
  }
  return [...seen].sort();
}

let built: { path: string; packages: string[] } | undefined;

/** Builds `.cache/kernel-e2e/cli-bundle.tar` from the current `dist/` once per test process. */
export function buildCliBundle(): { path: string; packages: string[] } {
  if (built !== undefined) return built;
  mkdirSync(CACHE_DIR, { recursive: true });
  const trace = join(CACHE_DIR, 'cli-trace.txt');
  rmSync(trace, { force: true });
  for (const args of TRACE_RUNS) {
    try {
      execFileSync(process.execPath, ['--import', REGISTER, CLI_PATH, ...args], {
        env: { ...process.env, VFIO_E2E_TRACE: trace },
        stdio: 'ignore',
        timeout: 60_000,
      });
    } catch {
      // inspect may exit non-zero on a host without GPUs or IOMMU; the imports it made are what we want.
    }
  }
  const traced = existsSync(trace)
    ? [...new Set(readFileSync(trace, 'utf8').split('\n').filter((u) => u.startsWith('file:')))].map((u) => relative(REPO_ROOT, fileURLToPath(u)))
    : [];
  if (!traced.some((f) => f.startsWith('dist/'))) throw new PrerequisiteError(`tracing ${CLI_PATH} recorded no dist/ module`);
  const lock = (JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> }).packages;
  const packages = cliPackages(
    traced.filter((f) => f.startsWith('node_modules/')),
    lock,
  ).filter((p) => existsSync(join(REPO_ROOT, p)));
  // ES-module packages are fully visible to the resolve hook, so their traced files suffice (client-node:
  // ~800 of its files instead of 21 MB); CommonJS packages `require` internally, so they ship whole.
  const entries: string[] = [];
  for (const pkg of packages) {
    if (/\/@types\//.test(`/${pkg}`)) continue; // type declarations only, never loaded
    const manifest = JSON.parse(readFileSync(join(REPO_ROOT, pkg, 'package.json'), 'utf8')) as { type?: string; exports?: unknown };
    // A dual package (an `exports` "require" condition, e.g. `long`) is also loaded through require(): whole.
    const esmOnly = manifest.type === 'module' && !JSON.stringify(manifest.exports ?? {}).includes('"require"');
    if (esmOnly) {
      entries.push(`${pkg}/package.json`, ...traced.filter((f) => packageRoot(f) === pkg));
    } else {
      entries.push(pkg);
    }
  }
  const list = join(CACHE_DIR, 'cli-bundle.list');
  writeFileSync(list, ['dist', 'package.json', ...new Set(entries)].join('\n') + '\n');
  const out = join(CACHE_DIR, 'cli-bundle.tar');
  // Source maps, type declarations and docs are never loaded at run time; they are most of the bytes.
  execFileSync('tar', [
    '-cf', out, '-C', REPO_ROOT,
    // prebuilds: native add-ons for other runtimes (Bare) that Node never loads.
    '--exclude=prebuilds', '--exclude=*.map', '--exclude=*.d.ts', '--exclude=*.d.mts', '--exclude=*.d.cts', '--exclude=*.md', '--exclude=*.markdown',
    '-T', list,
  ]);
  writeFileSync(join(CACHE_DIR, 'cli-bundle.packages'), packages.join('\n') + '\n');
  built = { path: out, packages };
  return built;
}
