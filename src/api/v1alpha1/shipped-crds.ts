import { readFileSync } from 'node:fs';
import type { Crd } from './crd.js';
import { crdFileUrl, parseCrd } from './crd.js';
import type { ResourceKind } from './names.js';

/**
 * Reads a CRD this package ships (deploy/crds, resolved from this module's URL, see `crdFileUrl`) —
 * a package asset, not host state, so this is not host access. Synchronous because the validators
 * compile on first use inside synchronous guards. Throws when the file is missing or not a CRD.
 */
export function readShippedCrd(kind: ResourceKind): Crd {
  return parseCrd(readFileSync(crdFileUrl(kind), 'utf8'));
}
