/**
 * Global setup of the `peers` vitest project: builds every Go module under test/peers/ whose
 * key has no build yet (minutes on a cold Go cache; reused afterwards). Without Go the suites skip
 * with the reason (peerBinary); under CI=true a missing toolchain or a failed build fails the run.
 */
import { buildPeer, goVersion, peerModules } from '../../scripts/build-peers.mjs';
import { PEERS_REQUIRED } from './peers.js';

export default async function setup(): Promise<void> {
  const go = goVersion();
  if (go.reason !== undefined) {
    if (PEERS_REQUIRED) throw new Error(`CI=true requires the real Kubernetes peers, but there is ${go.reason}`);
    console.warn(`peers: skipping the real-peer suites: ${go.reason}`);
    return;
  }
  for (const module of peerModules()) {
    try {
      const { dir, seconds, reused } = await buildPeer(module, { log: (line) => console.warn(line) });
      if (!reused) console.warn(`peers: ${module} built in ${seconds} s → ${dir}`);
    } catch (err) {
      if (PEERS_REQUIRED) throw err;
      console.warn(`peers: ${(err as Error).message}`);
    }
  }
}
