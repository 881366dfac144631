import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * NVIDIA's kubevirt-gpu-device-plugin, the reference device plugin for KubeVirt GPU passthrough
 * (shared/research/anchors.md §1), built from the Go module proxy at a pinned version into
 * `.cache/peers/` (git-ignored) when missing. Nothing is fetched any other way: when the proxy does not
 * serve the module, the benchmark reports the proxy's answer instead of a figure.
 *
 * Known obstacle (checked 2026-11-30): proxy.golang.org answers 403 "This module version is not available"
 * for every version tried (v1.3.1, v1.5.0, v1.6.0), and the repository's go.mod declares
 * `module kubevirt-gpu-device-plugin` — not its import path — so the proxy cannot serve it as a module.
 */
export const ANCHOR_MODULE = 'github.com/NVIDIA/kubevirt-gpu-device-plugin';
/** The version the GPU Operator deploys in KubeVirt mode (anchors.md §2). */
export const ANCHOR_VERSION = 'v1.6.0';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PEERS_CACHE = join(REPO_ROOT, '.cache', 'peers');

export type AnchorBuild = { readonly binary: string } | { readonly unavailable: string };

/** Builds (once) and returns the anchor binary, or why it is unavailable. Synchronous: runs `go`. */
export function ensureAnchorPlugin(): AnchorBuild {
  const binary = join(PEERS_CACHE, `kubevirt-gpu-device-plugin-${ANCHOR_VERSION}`);
  if (existsSync(binary)) return { binary };
  const go = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (go.error || go.status !== 0) return { unavailable: 'no Go toolchain on PATH' };
  mkdirSync(PEERS_CACHE, { recursive: true });
  const env = { ...process.env, GOMODCACHE: join(PEERS_CACHE, 'gomod'), GOFLAGS: '-modcacherw', GOTOOLCHAIN: 'local' };
  const dl = spawnSync('go', ['mod', 'download', '-json', `${ANCHOR_MODULE}@${ANCHOR_VERSION}`], { encoding: 'utf8', env, cwd: PEERS_CACHE, timeout: 300_000 });
  let info: { Dir?: string; Error?: string } = {};
  try {
    info = JSON.parse(dl.stdout) as typeof info;
  } catch {
    return { unavailable: `go mod download ${ANCHOR_MODULE}@${ANCHOR_VERSION} failed: ${(dl.stderr || dl.stdout).trim().slice(0, 300)}` };
  }
  if (info.Error || !info.Dir) return { unavailable: `Go module proxy: ${(info.Error ?? 'no module directory').replace(/\s+/g, ' ').slice(0, 300)}` };
  // The module zip is the repository at that tag; its own go.mod makes it the main module, its go.sum pins
  // the dependencies, which come from the proxy too.
  const build = spawnSync('go', ['build', '-o', binary, './cmd'], { encoding: 'utf8', env: { ...env, GOFLAGS: '-modcacherw -mod=mod' }, cwd: info.Dir, timeout: 900_000 });
  if (build.status !== 0) return { unavailable: `go build of ${ANCHOR_MODULE}@${ANCHOR_VERSION} failed: ${build.stderr.trim().slice(-300)}` };
  return { binary };
}
