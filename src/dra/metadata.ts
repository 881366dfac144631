import { join } from 'node:path';
import type { DraFiles } from './files-node.js';
import type { DeviceAttributes } from './slice.js';

/**
 * Device metadata for the container (KEP-5304, "DRA device attributes downward API"): a
 * `metadata.resource.k8s.io/v1alpha1` `DeviceMetadata` object per request, from which KubeVirt's
 * virt-launcher (GPUsWithDRA) takes `resource.kubernetes.io/pciBusID`. The driver writes the file on the
 * host and bind-mounts it read-only into the container through a per-claim CDI device, at two places:
 * - where KubeVirt v1.8.0 reads it (pkg/dra/utils.go DefaultMetadataBasePath, read by h13c at the pin):
 *   `/var/run/dra-device-attributes/<claimName>/<request>/<driver>-metadata.json` (template claims are
 *   found by globbing `*`/<request> and matching `podClaimName`);
 * - where the Kubernetes docs' device metadata protocol puts it:
 *   `/var/run/kubernetes.io/dra-device-attributes/resourceclaims/<claimName>/<request>/…` (or
 *   `resourceclaimtemplates/<podClaimName>/<request>/…`).
 * Kubernetes 1.34 itself writes nothing (no KEP-5304 code in kubelet or dynamic-resource-allocation v0.34).
 */
export const METADATA_CONTAINER_ROOT = '/var/run/kubernetes.io/dra-device-attributes';
export const KUBEVIRT_METADATA_ROOT = '/var/run/dra-device-attributes';
export const METADATA_API_VERSION = 'metadata.resource.k8s.io/v1alpha1';
/** Set by kube-controller-manager on claims it made from a pod's ResourceClaimTemplate. */
export const POD_CLAIM_NAME_ANNOTATION = 'resource.kubernetes.io/pod-claim-name';

export interface MetadataDevice {
  readonly driver: string;
  readonly pool: string;
  readonly name: string;
  readonly attributes: DeviceAttributes;
}

export interface DeviceMetadata {
  readonly kind: 'DeviceMetadata';
  readonly apiVersion: typeof METADATA_API_VERSION;
  readonly metadata: { readonly name: string; readonly namespace: string; readonly uid: string; readonly generation: number };
  readonly podClaimName?: string;
  readonly requests: readonly { readonly name: string; readonly devices: readonly MetadataDevice[] }[];
}

/** The container-side path of one request's metadata file (a prioritized-list subrequest uses its top-level name). */
export function metadataContainerPath(claim: { name: string; podClaimName?: string | undefined }, request: string, driver: string): string {
  const top = request.split('/')[0]!;
  const base = claim.podClaimName !== undefined ? `resourceclaimtemplates/${claim.podClaimName}` : `resourceclaims/${claim.name}`;
  return `${METADATA_CONTAINER_ROOT}/${base}/${top}/${driver}-metadata.json`;
}

/** The path KubeVirt v1.8.0's virt-launcher reads: `/var/run/dra-device-attributes/<claimName>/<request>/<driver>-metadata.json`. */
export function kubevirtMetadataPath(claim: { name: string }, request: string, driver: string): string {
  return `${KUBEVIRT_METADATA_ROOT}/${claim.name}/${request.split('/')[0]!}/${driver}-metadata.json`;
}

export interface ClaimFiles {
  /** Host paths written (metadata files, the CDI spec), for removal on unprepare. */
  readonly files: readonly string[];
  /** Per top-level request: the CDI device ID (`handoff.dev/claim=<uid>-<request>`) that mounts its file. */
  readonly cdiDeviceIds: ReadonlyMap<string, string>;
}

export const CLAIM_CDI_KIND = 'handoff.dev/claim';

/**
 * Writes one metadata file per request of the claim under `<metadataDir>/<claim uid>/<request>/` and a CDI
 * spec `<cdiDir>/handoff.dev-claim_<uid>.json` with one device per request that bind-mounts its file
 * read-only at the container path (per request, so a container that uses one request of the claim sees
 * only that request's file). All writes are atomic (temp + rename).
 */
export async function writeClaimFiles(opts: {
  readonly files: DraFiles;
  readonly metadataDir: string;
  readonly cdiDir: string;
  readonly driver: string;
  readonly claim: { namespace: string; name: string; uid: string; podClaimName?: string | undefined };
  readonly requests: ReadonlyMap<string, readonly MetadataDevice[]>;
}): Promise<ClaimFiles> {
  const { claim, driver } = opts;
  const files: string[] = [];
  const cdiDevices: { name: string; containerEdits: { mounts: { hostPath: string; containerPath: string; options: string[] }[] } }[] = [];
  const ids = new Map<string, string>();
  const byTop = new Map<string, { name: string; devices: readonly MetadataDevice[] }[]>();
  for (const [request, devices] of opts.requests) {
    const top = request.split('/')[0]!;
    byTop.set(top, [...(byTop.get(top) ?? []), { name: request, devices }]);
  }
  for (const [top, requests] of byTop) {
    const doc: DeviceMetadata = {
      kind: 'DeviceMetadata',
      apiVersion: METADATA_API_VERSION,
      metadata: { name: claim.name, namespace: claim.namespace, uid: claim.uid, generation: 1 },
      ...(claim.podClaimName !== undefined ? { podClaimName: claim.podClaimName } : {}),
      requests,
    };
    const hostPath = join(opts.metadataDir, claim.uid, top, `${driver}-metadata.json`);
    await opts.files.writeAtomic(hostPath, `${JSON.stringify(doc)}\n`);
    files.push(hostPath);
    const name = `${claim.uid}-${top}`;
    const options = ['ro', 'nosuid', 'nodev', 'bind'];
    cdiDevices.push({
      name,
      containerEdits: {
        mounts: [
          { hostPath, containerPath: kubevirtMetadataPath(claim, top, driver), options },
          { hostPath, containerPath: metadataContainerPath(claim, top, driver), options },
        ],
      },
    });
    ids.set(top, `${CLAIM_CDI_KIND}=${name}`);
  }
  const spec = { cdiVersion: '0.6.0', kind: CLAIM_CDI_KIND, devices: cdiDevices };
  const specPath = claimSpecPath(opts.cdiDir, claim.uid);
  await opts.files.writeAtomic(specPath, `${JSON.stringify(spec, null, 2)}\n`);
  files.push(specPath);
  return { files, cdiDeviceIds: ids };
}

/** The claim's CDI spec file: `<cdiDir>/handoff.dev-claim_<uid>.json`. */
export function claimSpecPath(cdiDir: string, uid: string): string {
  return join(cdiDir, `handoff.dev-claim_${uid}.json`);
}

/** Removes what writeClaimFiles wrote (missing files are fine: unprepare is idempotent). */
export async function removeClaimFiles(io: DraFiles, files: readonly string[], metadataDir: string, uid: string): Promise<void> {
  for (const f of files) await io.remove(f);
  await io.remove(join(metadataDir, uid));
}
