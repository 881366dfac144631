/** What the fake API server needs to know about a resource type to serve it. */
export interface ResourceType {
  readonly group: string; // '' for the core group
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
  /** Whether `/status` is a subresource: then main writes ignore status and status writes ignore the rest. */
  readonly statusSubresource: boolean;
  readonly shortNames?: readonly string[];
}

export function apiVersionOf(t: Pick<ResourceType, 'group' | 'version'>): string {
  return t.group === '' ? t.version : `${t.group}/${t.version}`;
}

/** One key per group/version/plural; the store and the watch fan-out are indexed by it. */
export function resourceKey(t: Pick<ResourceType, 'group' | 'version' | 'plural'>): string {
  return `${t.group}/${t.version}/${t.plural}`;
}

export const DEFAULT_RESOURCES: readonly ResourceType[] = [
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false, statusSubresource: true },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true, statusSubresource: true },
  { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true, statusSubresource: false },
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false, statusSubresource: true },
  { group: 'events.k8s.io', version: 'v1', plural: 'events', kind: 'Event', namespaced: true, statusSubresource: false },
  { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true, statusSubresource: false },
  {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    plural: 'customresourcedefinitions',
    kind: 'CustomResourceDefinition',
    namespaced: false,
    statusSubresource: true,
  },
  {
    group: 'handoff.dev',
    version: 'v1alpha1',
    plural: 'gpupassthroughs',
    kind: 'GpuPassthrough',
    namespaced: false,
    statusSubresource: true,
    shortNames: ['gpt'],
  },
  {
    group: 'handoff.dev',
    version: 'v1alpha1',
    plural: 'nodegpupassthroughs',
    kind: 'NodeGpuPassthrough',
    namespaced: false,
    statusSubresource: true,
    shortNames: ['ngp'],
  },
  { group: 'kubevirt.io', version: 'v1', plural: 'kubevirts', kind: 'KubeVirt', namespaced: true, statusSubresource: true },
  // Dynamic Resource Allocation (GA in 1.34): ResourceSlices are validated like the real server's (resource-validation.ts).
  { group: 'resource.k8s.io', version: 'v1', plural: 'resourceslices', kind: 'ResourceSlice', namespaced: false, statusSubresource: false },
  { group: 'resource.k8s.io', version: 'v1', plural: 'resourceclaims', kind: 'ResourceClaim', namespaced: true, statusSubresource: true },
  { group: 'resource.k8s.io', version: 'v1', plural: 'deviceclasses', kind: 'DeviceClass', namespaced: false, statusSubresource: false },
];

/** Resource types a CustomResourceDefinition object describes (one per served version). */
export function resourceTypesFromCrd(crd: unknown): ResourceType[] {
  const spec = (crd as { spec?: Record<string, unknown> } | null)?.spec;
  if (!spec) return [];
  const names = spec['names'] as { plural?: string; kind?: string; shortNames?: string[] } | undefined;
  const group = spec['group'];
  const versions = spec['versions'] as { name?: string; served?: boolean; subresources?: { status?: unknown } }[] | undefined;
  if (typeof group !== 'string' || !names?.plural || !names.kind || !Array.isArray(versions)) return [];
  return versions
    .filter((v) => v.name && v.served !== false)
    .map((v) => ({
      group,
      version: v.name as string,
      plural: names.plural as string,
      kind: names.kind as string,
      namespaced: spec['scope'] === 'Namespaced',
      statusSubresource: v.subresources?.status !== undefined,
      ...(names.shortNames ? { shortNames: names.shortNames } : {}),
    }));
}
