/**
 * The real Kubernetes peers built from our Go modules under test/peers/<module>/ by
 * scripts/build-peers.mjs into .cache/peers/<module>-<key>/ (key: module files + `go version`).
 * The `peers` vitest project's global setup (test/support/peers-setup.ts) builds what is missing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { peerBuildDir } from '../../scripts/build-peers.mjs';

/** A peer's binary: its absolute path, or why it is not there (suites skip with it in their title). */
export type PeerBinary = { path: string; skip?: undefined } | { skip: string; path?: undefined };

/** True under CI=true: there a missing toolchain or a failed build fails the run instead of skipping. */
export const PEERS_REQUIRED = process.env.CI === 'true';

/**
 * Path of `binary` (a `cmd/<binary>` of module `module`) for the current sources and Go toolchain.
 * Returns { skip: reason } when Go is missing, the build failed, or it was never built;
 * under CI=true that throws instead, so the suite fails rather than skipping.
 */
export function peerBinary(module: string, binary: string): PeerBinary {
  const where = peerBuildDir(module);
  let skip: string;
  if (where.reason !== undefined) {
    skip = where.reason;
  } else if (where.built) {
    const path = join(where.dir, binary);
    if (existsSync(path)) return { path };
    skip = `test/peers/${module} has no cmd/${binary}`;
  } else if (existsSync(where.failedLog)) {
    skip = `go build of test/peers/${module} failed: ${readFileSync(where.failedLog, 'utf8').trim().split('\n').pop()}`;
  } else {
    skip = `test/peers/${module} not built: run node scripts/build-peers.mjs ${module}`;
  }
  if (PEERS_REQUIRED) throw new Error(`CI=true requires the real peers: ${skip}`);
  return { skip };
}
