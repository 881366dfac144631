import type { GpuPassthrough, NodeGpuPassthrough } from '../api/v1alpha1/index.js';
import type { KubeVirtCr, PciHostDevice } from '../api/kubevirt.js';
import { KUBEVIRT_MANAGED_ANNOTATION, isDeleting, resolvePolicySpec } from '../api/v1alpha1/index.js';
import { canonicalJson } from './canonical.js';

/**
 * KubeVirt registration: the operator adds each resource it creates to the KubeVirt CR's
 * `spec.configuration.permittedHostDevices.pciHostDevices` (externalResourceProvider: true, so KubeVirt
 * permits the resource but leaves allocation to our device plugin) and remembers what it added in an
 * annotation, so it only ever removes its own entries. Pure.
 *
 *  - User entries (anything not in the annotation) are never changed, reordered or removed. When a user
 *    entry already permits a resource we want, we add nothing and do not adopt it.
 *  - Existing entries keep their order; new ones are appended sorted by resourceName then selector.
 *  - Returns null when list and annotation are already right: no write.
 */

export interface ManagedEntry {
  readonly pciVendorSelector: string;
  readonly resourceName: string;
}

/** KubeVirt's selector form: upper-case `VVVV:DDDD`. */
export function pciVendorSelector(vendorId: string, deviceId: string): string {
  return `${vendorId.toUpperCase()}:${deviceId.toUpperCase()}`;
}

function keyOf(e: ManagedEntry): string {
  return `${e.pciVendorSelector.toUpperCase()}|${e.resourceName}`;
}

function compareEntries(a: ManagedEntry, b: ManagedEntry): number {
  if (a.resourceName !== b.resourceName) return a.resourceName < b.resourceName ? -1 : 1;
  const sa = a.pciVendorSelector.toUpperCase();
  const sb = b.pciVendorSelector.toUpperCase();
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

/**
 * What KubeVirt should permit: every GPU in a node spec whose policy is live and asks for registration,
 * as (vendor:device, resource). A GPU whose resource name is the plugin's default is included once the
 * agent reports that name; until then there is nothing to permit.
 */
export function desiredKubeVirtDevices(
  policies: readonly GpuPassthrough[],
  states: Iterable<NodeGpuPassthrough>,
): ManagedEntry[] {
  const register = new Set(
    policies.filter((p) => !isDeleting(p) && resolvePolicySpec(p.spec).kubevirtRegister).map((p) => p.metadata.name),
  );
  const out = new Map<string, ManagedEntry>();
  for (const state of states) {
    for (const g of state.spec?.gpus ?? []) {
      if (!register.has(g.policy)) continue;
      const inv = state.status?.inventory?.find((x) => x.address === g.address);
      if (!inv) continue;
      const resourceName = g.resourceName || state.status?.gpus?.find((x) => x.address === g.address)?.resourceName || '';
      if (resourceName === '') continue;
      const e = { pciVendorSelector: pciVendorSelector(inv.vendorId, inv.deviceId), resourceName };
      out.set(keyOf(e), e);
    }
  }
  return [...out.values()].sort(compareEntries);
}

/** The annotation's list; anything unreadable counts as "we added nothing" (never delete on a guess). */
export function parseManaged(annotation: string | undefined): ManagedEntry[] {
  if (annotation === undefined || annotation === '') return [];
  let raw: unknown;
  try {
    raw = JSON.parse(annotation);
  } catch {
    return [];
  }
  if (!Array.isArray(raw)) return [];
  return raw.filter(
    (e): e is ManagedEntry =>
      typeof e === 'object' && e !== null && typeof e.pciVendorSelector === 'string' && typeof e.resourceName === 'string',
  );
}

export interface KubeVirtChange {
  readonly pciHostDevices: PciHostDevice[];
  readonly managed: ManagedEntry[];
  readonly annotation: string;
  /** JSON merge patch (lists replace whole), carrying resourceVersion so a concurrent edit yields 409. */
  readonly patch: {
    metadata: { annotations: Record<string, string>; resourceVersion?: string };
    spec: { configuration: { permittedHostDevices: { pciHostDevices: PciHostDevice[] } } };
  };
}

export function planKubeVirt(cr: KubeVirtCr, desired: readonly ManagedEntry[]): KubeVirtChange | null {
  const current = cr.spec?.configuration?.permittedHostDevices?.pciHostDevices ?? [];
  const previouslyManaged = parseManaged(cr.metadata.annotations?.[KUBEVIRT_MANAGED_ANNOTATION]);
  const managedKeys = new Set(previouslyManaged.map(keyOf));
  const desiredKeys = new Set(desired.map(keyOf));

  // Keep every user entry and every managed entry still wanted, in their current order.
  const kept = current.filter((e) => !managedKeys.has(keyOf(e)) || desiredKeys.has(keyOf(e)));
  const present = new Set(kept.map(keyOf));
  const userKeys = new Set(kept.filter((e) => !managedKeys.has(keyOf(e))).map(keyOf));
  const added = [...desired]
    .sort(compareEntries)
    .filter((e) => !present.has(keyOf(e)))
    .map((e): PciHostDevice => ({ pciVendorSelector: e.pciVendorSelector, resourceName: e.resourceName, externalResourceProvider: true }));
  const next = [...kept, ...added];
  // Ours: everything wanted that is not a user's entry.
  const managed = desired
    .filter((e) => !userKeys.has(keyOf(e)))
    .map((e) => ({ pciVendorSelector: e.pciVendorSelector, resourceName: e.resourceName }))
    .sort(compareEntries);
  const annotation = JSON.stringify(managed);

  const listSame = canonicalJson(next) === canonicalJson(current);
  const annotationSame =
    canonicalJson([...previouslyManaged].sort(compareEntries)) === canonicalJson(managed) &&
    (cr.metadata.annotations?.[KUBEVIRT_MANAGED_ANNOTATION] !== undefined || managed.length === 0);
  if (listSame && annotationSame) return null;

  const patch: KubeVirtChange['patch'] = {
    metadata: { annotations: { [KUBEVIRT_MANAGED_ANNOTATION]: annotation } },
    spec: { configuration: { permittedHostDevices: { pciHostDevices: next } } },
  };
  if (cr.metadata.resourceVersion !== undefined) patch.metadata.resourceVersion = cr.metadata.resourceVersion;
  return { pciHostDevices: next, managed, annotation, patch };
}
