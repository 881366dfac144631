// The control plane ships in src/testing (the operator benchmark uses it too); tests import it here.
import { peerBinary } from './peers.js';

export * from '../../src/testing/control-plane.js';

/** The etcd and kube-apiserver binaries, or why the suites skip (under CI=true peerBinary throws instead). */
export function controlPlaneBinaries(): { etcd: string; apiserver: string; skip?: undefined } | { skip: string } {
  const etcd = peerBinary('kube', 'etcd');
  if (etcd.skip !== undefined) return { skip: etcd.skip };
  const apiserver = peerBinary('kube', 'kube-apiserver');
  if (apiserver.skip !== undefined) return { skip: apiserver.skip };
  return { etcd: etcd.path, apiserver: apiserver.path };
}
