import type { GpuPassthroughSpec, GpuSelector, LabelSelector } from './types.js';

/**
 * The CRD defaults as code. Objects read before defaulting (or from a fake API server) may omit fields
 * that carry a `default:` in deploy/crds; `resolvePolicySpec` applies the same values, so the pure logic
 * never guesses.
 */

/** A policy spec with every CRD default applied. */
export interface ResolvedPolicySpec {
  readonly nodeSelector: LabelSelector;
  readonly gpus: Required<GpuSelector>;
  readonly resourceName: string; // '' = the device plugin's default
  readonly allowBootGpu: boolean;
  readonly paused: boolean;
  readonly kubevirtRegister: boolean;
  readonly priority: number;
}

export function resolvePolicySpec(spec: GpuPassthroughSpec | undefined): ResolvedPolicySpec {
  return {
    nodeSelector: spec?.nodeSelector ?? {},
    gpus: {
      vendorDevices: spec?.gpus?.vendorDevices ?? [],
      classes: spec?.gpus?.classes ?? [],
      addresses: spec?.gpus?.addresses ?? [],
    },
    resourceName: spec?.resourceName ?? '',
    allowBootGpu: spec?.allowBootGpu ?? false,
    paused: spec?.paused ?? false,
    kubevirtRegister: spec?.kubevirt?.register ?? true,
    priority: spec?.priority ?? 0,
  };
}
