import { InvalidArgumentError, NotFoundError } from '../core/errors.js';
import type { KubeObject } from '../kube/port.js';

/**
 * The parts of a `resource.k8s.io/v1` ResourceClaim the DRA driver reads: the allocation the scheduler
 * wrote (`status.allocation.devices.results` / `.config`). Field names are the API's
 * (k8s.io/api/resource/v1 types.go: DeviceRequestAllocationResult, DeviceAllocationConfiguration).
 */
export interface DeviceRequestAllocationResult {
  readonly request: string;
  readonly driver: string;
  readonly pool: string;
  readonly device: string;
  readonly adminAccess?: boolean;
}

export interface DeviceAllocationConfiguration {
  /** `FromClass` or `FromClaim`; class config comes first, claim config overrides it. */
  readonly source: string;
  /** Requests the config applies to; empty or absent: every request. */
  readonly requests?: readonly string[];
  readonly opaque?: { readonly driver: string; readonly parameters: unknown };
}

export interface ResourceClaim extends KubeObject {
  readonly spec?: unknown;
  readonly status?: {
    readonly allocation?: {
      readonly devices?: {
        readonly results?: readonly DeviceRequestAllocationResult[];
        readonly config?: readonly DeviceAllocationConfiguration[];
      };
    };
  };
}

/** What kubelet names in NodePrepareResources / NodeUnprepareResources. */
export interface ClaimRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

/**
 * Where the driver gets a claim's allocation from. kubeletplugin reads it from the API server
 * (`ResourceClaims(namespace).Get(name)` and compares the UID); tests and the QEMU guest supply claims
 * from files. Throws NotFoundError when the claim is gone, and when the stored claim's UID is not the
 * one kubelet named (the claim was deleted and re-created under the same name).
 */
export interface ClaimSource {
  get(ref: ClaimRef): Promise<ResourceClaim>;
}

/** Checks the UID the way kubeletplugin does: a claim of the same name but another UID is not ours to prepare. */
export function checkClaimUid(ref: ClaimRef, claim: ResourceClaim): ResourceClaim {
  const uid = claim.metadata?.uid;
  if (uid !== ref.uid) {
    throw new NotFoundError(`ResourceClaim ${ref.namespace}/${ref.name}: kubelet asked for UID ${ref.uid}, the claim has UID ${uid ?? '(none)'} (deleted and re-created?)`);
  }
  return claim;
}

/** The opaque config a claim (or its DeviceClass) may carry for our driver. */
export const CONFIG_API_VERSION = 'gpu.handoff.dev/v1alpha1';
export const CONFIG_KIND = 'GpuConfig';

export interface GpuConfig {
  /** Prepare the boot GPU (its firmware console goes dark). Only honoured when the node's policy allows it too. */
  readonly allowBootGpu: boolean;
}

/**
 * Parses one opaque config. Strict: another apiVersion/kind, an unknown field or a non-boolean value is an
 * InvalidArgumentError — a typo (`allowBootGPU`) must not silently mean "no".
 */
export function parseGpuConfig(parameters: unknown): GpuConfig {
  if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters)) {
    throw new InvalidArgumentError(`opaque config for gpu.handoff.dev must be an object with apiVersion ${CONFIG_API_VERSION} and kind ${CONFIG_KIND}`);
  }
  const p = parameters as Record<string, unknown>;
  if (p['apiVersion'] !== CONFIG_API_VERSION || p['kind'] !== CONFIG_KIND) {
    throw new InvalidArgumentError(
      `opaque config for gpu.handoff.dev has apiVersion ${JSON.stringify(p['apiVersion'])}, kind ${JSON.stringify(p['kind'])}; expected ${CONFIG_API_VERSION} ${CONFIG_KIND}`,
    );
  }
  const unknown = Object.keys(p).filter((k) => !['apiVersion', 'kind', 'allowBootGpu'].includes(k));
  if (unknown.length > 0) throw new InvalidArgumentError(`opaque config ${CONFIG_KIND}: unknown field(s) ${unknown.join(', ')} (known: allowBootGpu)`);
  const allow = p['allowBootGpu'];
  if (allow !== undefined && typeof allow !== 'boolean') throw new InvalidArgumentError(`opaque config ${CONFIG_KIND}: allowBootGpu must be true or false, not ${JSON.stringify(allow)}`);
  return { allowBootGpu: allow === true };
}

/** One device of ours in a claim's allocation, with the config that applies to its request. */
export interface AllocatedDevice {
  readonly request: string;
  readonly pool: string;
  readonly device: string;
  readonly config: GpuConfig;
}

/**
 * The devices of `driver` in the claim's allocation, each with its effective config: configs apply in
 * order (FromClass before FromClaim, as the API documents), a later one for the same request wins.
 * Throws InvalidArgumentError when the claim is not allocated, or a config for our driver is bad.
 */
export function allocatedDevices(claim: ResourceClaim, driver: string): AllocatedDevice[] {
  const devices = claim.status?.allocation?.devices;
  if (!devices) throw new InvalidArgumentError(`ResourceClaim ${claim.metadata?.namespace ?? ''}/${claim.metadata?.name ?? ''} is not allocated (no status.allocation)`);
  const configs = [...(devices.config ?? [])]
    .filter((c) => c.opaque?.driver === driver)
    .sort((a, b) => rank(a.source) - rank(b.source))
    .map((c) => ({ requests: c.requests ?? [], config: parseGpuConfig(c.opaque?.parameters) }));
  return (devices.results ?? [])
    .filter((r) => r.driver === driver)
    .map((r) => {
      // The request name becomes a directory of the metadata files: only what the API allows (a DNS label, or
      // `<request>/<subrequest>` of two), never `..` from a hand-written claim file.
      const parts = r.request.split('/');
      if (parts.length > 2 || !parts.every((p) => DNS_LABEL.test(p))) {
        throw new InvalidArgumentError(`request name ${JSON.stringify(r.request)} in the claim's allocation is not a DNS label (or <request>/<subrequest>)`);
      }
      let config: GpuConfig = { allowBootGpu: false };
      const top = parts[0]!; // a prioritized-list subrequest is `<request>/<subrequest>`
      for (const c of configs) if (c.requests.length === 0 || c.requests.includes(r.request) || c.requests.includes(top)) config = c.config;
      return { request: r.request, pool: r.pool, device: r.device, config };
    });
}

/** RFC 1123 label, at most 63 characters (resource.k8s.io request names). */
const DNS_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function rank(source: string): number {
  return source === 'FromClass' ? 0 : 1;
}
