#!/usr/bin/env node
// Builds the real Kubernetes peers the tests run against (kube-apiserver, etcd, kubelet harnesses…)
// from our Go modules under test/peers/<module>/ (pinned upstream versions in each go.mod) into
// .cache/peers/<module>-<key>/, where key hashes the module's Go files and `go version`.
// An existing build for the same key is reused, so only a changed pin or toolchain rebuilds.
//
//   node scripts/build-peers.mjs [module...]   (default: every module under test/peers/)
//
// Exit codes: 0 built or reused (prints "<module> <dir>" per module), 1 a build failed,
// 3 no Go toolchain (the reason is printed). Product code stays TypeScript; Go is only for peers.
import { createHash } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const PEERS_SRC = join(REPO_ROOT, 'test/peers');
export const PEERS_CACHE = join(REPO_ROOT, '.cache/peers');

/** The `go` binary's version line, or null with the reason when there is no usable Go toolchain. */
export function goVersion() {
  try {
    return { version: execFileSync('go', ['version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim() };
  } catch (err) {
    return { reason: `no Go toolchain: \`go version\` failed (${err.code === 'ENOENT' ? 'go not on PATH' : err.message.split('\n')[0]})` };
  }
}

/** Every Go module of ours under test/peers/ (directories holding a go.mod). */
export function peerModules() {
  if (!existsSync(PEERS_SRC)) return [];
  return readdirSync(PEERS_SRC).filter((name) => existsSync(join(PEERS_SRC, name, 'go.mod'))).sort();
}

function moduleFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      // TypeScript tests and docs living beside the Go code do not change the binaries.
      else if (!/\.(ts|md)$/.test(name)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Cache key of a module: sha256 over its files (paths and bytes) and the `go version` line; 16 hex digits. */
export function peerKey(module, version) {
  const dir = join(PEERS_SRC, module);
  const hash = createHash('sha256').update(`${version}\n`);
  for (const file of moduleFiles(dir)) hash.update(`${relative(dir, file)}\n`).update(readFileSync(file)).update('\n');
  return hash.digest('hex').slice(0, 16);
}

/**
 * Where a module's binaries live for the current sources and toolchain.
 * Returns { dir, built } or { reason } when Go is missing or the module does not exist.
 */
export function peerBuildDir(module, version = goVersion()) {
  if (version.reason) return { reason: version.reason };
  if (!existsSync(join(PEERS_SRC, module, 'go.mod'))) return { reason: `no peer module test/peers/${module}` };
  const dir = join(PEERS_CACHE, `${module}-${peerKey(module, version.version)}`);
  return { dir, built: existsSync(dir), failedLog: `${dir}.failed` };
}

/** Builds one module's ./cmd/... unless that key is already built. Resolves to { dir, seconds, reused }. */
export async function buildPeer(module, { log = (line) => process.stderr.write(`${line}\n`) } = {}) {
  const version = goVersion();
  const where = peerBuildDir(module, version);
  if (where.reason) throw Object.assign(new Error(where.reason), { code: 'NO_GO' });
  if (where.built) return { dir: where.dir, seconds: 0, reused: true };
  mkdirSync(PEERS_CACHE, { recursive: true });
  const tmp = `${where.dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const logFile = `${where.dir}.log`;
  log(`build-peers: building ${module} (${version.version}) into ${where.dir} — a cold build of Kubernetes takes many minutes; log: ${logFile}`);
  const started = Date.now();
  // -buildvcs=false: the repo's commit must not change the binaries (or the Go build cache's keys).
  const child = spawn('go', ['build', '-buildvcs=false', '-o', `${tmp}/`, './cmd/...'], {
    cwd: join(PEERS_SRC, module),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b) => { output += b; });
  child.stderr.on('data', (b) => { output += b; });
  const code = await new Promise((res) => child.on('close', res));
  const seconds = Math.round((Date.now() - started) / 100) / 10;
  writeFileSync(logFile, output);
  if (code !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    const tail = output.trim().split('\n').slice(-20).join('\n');
    writeFileSync(where.failedLog, tail);
    throw new Error(`build-peers: go build of test/peers/${module} failed (exit ${code}) after ${seconds} s:\n${tail}`);
  }
  rmSync(where.failedLog, { force: true });
  try {
    renameSync(tmp, where.dir);
  } catch (err) {
    // Another process finished the same key first: its build is as good as ours.
    if (!existsSync(where.dir)) throw err;
    rmSync(tmp, { recursive: true, force: true });
  }
  // Older keys of this module are dead weight (the API server binary alone is ~100 MiB).
  for (const name of readdirSync(PEERS_CACHE)) {
    const p = join(PEERS_CACHE, name);
    if (name.startsWith(`${module}-`) && !p.startsWith(where.dir) && !name.includes('.tmp-')) rmSync(p, { recursive: true, force: true });
  }
  log(`build-peers: ${module} built in ${seconds} s`);
  return { dir: where.dir, seconds, reused: false };
}

async function main(argv) {
  const version = goVersion();
  if (version.reason) {
    process.stderr.write(`build-peers: cannot build the Kubernetes test peers: ${version.reason}. Install Go ≥ 1.24 (https://go.dev/dl/).\n`);
    return 3;
  }
  const modules = argv.length > 0 ? argv : peerModules();
  let failed = 0;
  for (const module of modules) {
    try {
      const { dir, seconds, reused } = await buildPeer(module);
      process.stdout.write(`${module} ${dir}${reused ? ' (reused)' : ` (built in ${seconds} s)`}\n`);
    } catch (err) {
      process.stderr.write(`${err.message}\n`);
      failed++;
    }
  }
  return failed > 0 ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
