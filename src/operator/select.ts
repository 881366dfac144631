import { parsePciAddress, parseVendorDevice } from '../core/pci-address.js';
import { parsePciClassSelector, pciClassMatches } from '../core/pci-class.js';
import type { GpuPassthrough, GpuSelector, InventoryGpu, LabelSelector, NodeLike, ResolvedPolicySpec } from '../api/v1alpha1/index.js';
import { resolvePolicySpec } from '../api/v1alpha1/index.js';

/**
 * Which nodes a policy applies to and which GPUs on them it takes. Pure; malformed selector entries
 * (which the CRD rejects, but a fake server or an old object may still carry) select nothing rather
 * than throw, so one bad policy cannot stop the reconcile of all the others.
 */

/** metav1.LabelSelector semantics: absent or empty selects everything; all requirements are ANDed. */
export function matchesLabelSelector(selector: LabelSelector | undefined, labels: Readonly<Record<string, string>> | undefined): boolean {
  if (!selector) return true;
  const have = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (have[k] !== v) return false;
  }
  for (const req of selector.matchExpressions ?? []) {
    const present = Object.prototype.hasOwnProperty.call(have, req.key);
    const values = req.values ?? [];
    switch (req.operator) {
      case 'In':
        // Kubernetes rejects In without values; treat it as matching nothing instead of everything.
        if (!present || !values.includes(have[req.key]!)) return false;
        break;
      case 'NotIn':
        if (values.length === 0) return false;
        if (present && values.includes(have[req.key]!)) return false;
        break;
      case 'Exists':
        if (!present) return false;
        break;
      case 'DoesNotExist':
        if (present) return false;
        break;
      default:
        return false; // unknown operator: fail closed
    }
  }
  return true;
}

export function policyMatchesNode(policy: GpuPassthrough, node: NodeLike): boolean {
  return matchesLabelSelector(policy.spec.nodeSelector, node.metadata.labels);
}

function tryParse<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

function inventoryClass(raw: string): number | undefined {
  const m = /^(?:0x)?([0-9a-fA-F]{1,6})$/.exec(raw);
  return m ? parseInt(m[1]!, 16) : undefined;
}

/** Whether one GPU matches any listed selector; an empty selector matches every GPU. */
export function gpuMatches(selector: Required<GpuSelector>, gpu: InventoryGpu): boolean {
  const { vendorDevices, classes, addresses } = selector;
  if (vendorDevices.length === 0 && classes.length === 0 && addresses.length === 0) return true;
  const vendor = gpu.vendorId.toLowerCase();
  const device = gpu.deviceId.toLowerCase();
  for (const raw of vendorDevices) {
    const id = tryParse(() => parseVendorDevice(raw));
    if (id && id.vendorId === vendor && id.deviceId === device) return true;
  }
  const cls = inventoryClass(gpu.class);
  if (cls !== undefined) {
    for (const raw of classes) {
      const sel = tryParse(() => parsePciClassSelector(raw));
      if (sel && pciClassMatches(sel, cls)) return true;
    }
  }
  const addr = tryParse(() => parsePciAddress(gpu.address));
  if (addr) {
    for (const raw of addresses) {
      if (tryParse(() => parsePciAddress(raw)) === addr) return true;
    }
  }
  return false;
}

export interface GpuSelection {
  /** GPUs the policy takes, in inventory order (sorted by address). */
  readonly selected: readonly InventoryGpu[];
  /** Boot GPUs the selectors matched but allowBootGpu kept on the host (reported, never taken). */
  readonly skippedBootGpus: readonly InventoryGpu[];
}

export function selectGpus(spec: ResolvedPolicySpec, inventory: readonly InventoryGpu[]): GpuSelection {
  const selected: InventoryGpu[] = [];
  const skippedBootGpus: InventoryGpu[] = [];
  for (const gpu of inventory) {
    if (!gpuMatches(spec.gpus, gpu)) continue;
    if (gpu.bootGpu && !spec.allowBootGpu) skippedBootGpus.push(gpu);
    else selected.push(gpu);
  }
  return { selected, skippedBootGpus };
}

/** Convenience over a whole policy object. */
export function selectPolicyGpus(policy: GpuPassthrough, inventory: readonly InventoryGpu[]): GpuSelection {
  return selectGpus(resolvePolicySpec(policy.spec), inventory);
}
