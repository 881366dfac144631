import { join } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../core/errors.js';
import type { KubeApi } from '../kube/port.js';
import { checkClaimUid, type ClaimRef, type ClaimSource, type ResourceClaim } from './claim.js';
import type { DraFiles } from './files-node.js';
import { RESOURCE_CLAIMS } from './slice.js';

/** Reads the claim from the API server (`GET resource.k8s.io/v1 resourceclaims`), as kubeletplugin does. */
export class KubeClaimSource implements ClaimSource {
  constructor(private readonly kube: Pick<KubeApi, 'get'>) {}
  async get(ref: ClaimRef): Promise<ResourceClaim> {
    return checkClaimUid(ref, await this.kube.get<ResourceClaim>(RESOURCE_CLAIMS, ref.name, ref.namespace));
  }
}

/**
 * Claims from files, for running without an API server (tests, the kubelet harness, the QEMU guest):
 * `<dir>/<namespace>/<name>.json` holds the ResourceClaim as the API returns it (resource.k8s.io/v1 JSON,
 * with `metadata.uid` and `status.allocation`). Read on every prepare, so a harness may write it late.
 */
export class DirClaimSource implements ClaimSource {
  constructor(
    private readonly dir: string,
    private readonly files: DraFiles,
  ) {}
  async get(ref: ClaimRef): Promise<ResourceClaim> {
    const path = join(this.dir, ref.namespace, `${ref.name}.json`);
    const text = await this.files.read(path);
    if (text === undefined) throw new NotFoundError(`ResourceClaim ${ref.namespace}/${ref.name} not found (no ${path})`);
    let claim: ResourceClaim;
    try {
      claim = JSON.parse(text) as ResourceClaim;
    } catch (err) {
      throw new InvalidArgumentError(`${path} is not JSON: ${(err as Error).message}`);
    }
    return checkClaimUid(ref, claim);
  }
}

/** Claims held in memory (unit tests, the demo). */
export class MemoryClaimSource implements ClaimSource {
  readonly claims = new Map<string, ResourceClaim>();
  put(claim: ResourceClaim): void {
    this.claims.set(`${claim.metadata?.namespace}/${claim.metadata?.name}`, claim);
  }
  async get(ref: ClaimRef): Promise<ResourceClaim> {
    const c = this.claims.get(`${ref.namespace}/${ref.name}`);
    if (!c) throw new NotFoundError(`ResourceClaim ${ref.namespace}/${ref.name} not found`);
    return checkClaimUid(ref, c);
  }
}
