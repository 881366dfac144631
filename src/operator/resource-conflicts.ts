import { extendedResourceNameProblem, pciResourceEnvVar } from '../core/resource-name.js';
import type { GpuPassthrough, GpuPassthroughStatus, NodeGpuPassthrough } from '../api/v1alpha1/index.js';
import type { KubeVirtCr } from '../api/kubevirt.js';
import { KUBEVIRT_MANAGED_ANNOTATION, resolvePolicySpec } from '../api/v1alpha1/index.js';
import { desiredKubeVirtDevices, parseManaged } from './kubevirt.js';
import { applyCondition } from './status.js';

/**
 * Problems with a policy's resource names that only show once it meets a node or KubeVirt — each one
 * makes kubelet or KubeVirt misbehave quietly, so it is reported as the policy's Conflict condition
 * (and, through the status events, a Warning Event) instead of counting as done. Pure.
 */

export const RESOURCE_CONFLICT_REASONS = {
  /** Two resource names on one node share a PCI_RESOURCE_* variable (kubelet keeps one value, logs the clash). */
  envVarClash: 'ResourceEnvVarClash',
  /** A KubeVirt entry for our selector + resource without externalResourceProvider: KubeVirt serves it too. */
  kubevirtServesResource: 'KubeVirtServesResource',
  /** The name is not one kubelet accepts (a CRD installed before the rule was tightened). */
  invalidResourceName: 'InvalidResourceName',
} as const;

export interface ResourceConflict {
  readonly reason: (typeof RESOURCE_CONFLICT_REASONS)[keyof typeof RESOURCE_CONFLICT_REASONS];
  readonly message: string;
}

/** The resource name each node advertises per GPU: the spec's name, else the one the agent reported. */
function namesOnNode(state: NodeGpuPassthrough): { policy: string; name: string }[] {
  const out: { policy: string; name: string }[] = [];
  for (const g of state.spec?.gpus ?? []) {
    const name = g.resourceName || state.status?.gpus?.find((x) => x.address === g.address)?.resourceName || '';
    if (name !== '') out.push({ policy: g.policy, name });
  }
  return out;
}

export function resourceConflicts(policy: GpuPassthrough, view: { readonly states: ReadonlyMap<string, NodeGpuPassthrough>; readonly kubevirt?: KubeVirtCr | null }): ResourceConflict[] {
  const out: ResourceConflict[] = [];
  const own = policy.metadata.name;
  const spec = resolvePolicySpec(policy.spec);
  const problem = spec.resourceName === '' ? undefined : extendedResourceNameProblem(spec.resourceName);
  if (problem) out.push({ reason: RESOURCE_CONFLICT_REASONS.invalidResourceName, message: `resourceName ${JSON.stringify(spec.resourceName)} is not one kubelet registers: ${problem}` });

  const clashes = new Set<string>();
  for (const [node, state] of [...view.states].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const entries = namesOnNode(state);
    const mine = new Set(entries.filter((e) => e.policy === own).map((e) => e.name));
    for (const name of mine) {
      const others = [...new Set(entries.filter((e) => e.name !== name && pciResourceEnvVar(e.name) === pciResourceEnvVar(name)).map((e) => e.name))].sort();
      if (others.length > 0) clashes.add(`${node}: ${name} and ${others.join(', ')} share ${pciResourceEnvVar(name)}`);
    }
  }
  if (clashes.size > 0) {
    const list = [...clashes];
    out.push({
      reason: RESOURCE_CONFLICT_REASONS.envVarClash,
      message: `resource names that map to one PCI_RESOURCE_* variable cannot be served together (kubelet would hand a VM only one of their address lists); the device plugin serves one of each pair: ${list.slice(0, 5).join('; ')}${list.length > 5 ? `; and ${list.length - 5} more` : ''}`,
    });
  }

  const cr = view.kubevirt;
  if (cr && spec.kubevirtRegister) {
    const managed = new Set(parseManaged(cr.metadata.annotations?.[KUBEVIRT_MANAGED_ANNOTATION]).map((e) => `${e.pciVendorSelector.toUpperCase()}|${e.resourceName}`));
    const wanted = new Set(desiredKubeVirtDevices([policy], view.states.values()).map((e) => `${e.pciVendorSelector.toUpperCase()}|${e.resourceName}`));
    const served = (cr.spec?.configuration?.permittedHostDevices?.pciHostDevices ?? []).filter((e) => {
      const key = `${e.pciVendorSelector.toUpperCase()}|${e.resourceName}`;
      return wanted.has(key) && !managed.has(key) && e.externalResourceProvider !== true;
    });
    if (served.length > 0) {
      out.push({
        reason: RESOURCE_CONFLICT_REASONS.kubevirtServesResource,
        message: `KubeVirt CR ${cr.metadata.name} permits ${served.map((e) => `${e.pciVendorSelector} as ${e.resourceName}`).join(', ')} without externalResourceProvider: true, so virt-handler starts its own device plugin for the same resource and kubelet's registration flaps between the two; set externalResourceProvider: true on that entry`,
      });
    }
  }
  return out;
}

/** The status with its Conflict condition reporting `conflicts` (unchanged when there are none). */
export function withResourceConflicts(status: GpuPassthroughStatus, previous: GpuPassthroughStatus | undefined, conflicts: readonly ResourceConflict[], now: Date | number): GpuPassthroughStatus {
  if (conflicts.length === 0) return status;
  const current = status.conditions?.find((c) => c.type === 'Conflict');
  const messages = conflicts.map((c) => c.message);
  if (current?.status === 'True') messages.push(current.message);
  const condition = applyCondition(previous?.conditions, { type: 'Conflict', status: 'True', reason: conflicts[0]!.reason, message: messages.join(' | ') }, now, status.observedGeneration);
  return { ...status, conditions: [...(status.conditions ?? []).filter((c) => c.type !== 'Conflict'), condition] };
}
