import type { PciAddress } from '../core/pci-address.js';
import type { Intent } from '../handoff/engine.js';
import type { GroupRecord } from '../handoff/plan.js';
import { assessGpu } from '../handoff/verdict.js';
import type { HostSnapshot } from '../host/model.js';
import { onVfio } from '../host/readiness.js';
import type { DesiredGpu, GpuPhase, GpuStatus, NodeGpuPassthroughSpec } from '../api/v1alpha1/index.js';

/** What the agent should do next on its node, decided from the desired spec and the host — pure. */
export interface NodeActions {
  /** GPUs to prepare, split by whether the policy allows taking the boot GPU. */
  readonly prepare: { readonly allowBootGpu: readonly PciAddress[]; readonly normal: readonly PciAddress[] };
  /** GPUs to give back to the host (not desired any more, prepared by us, not held by a pod). */
  readonly release: readonly PciAddress[];
  /** The per-GPU status as it stands before acting (phases Preparing/Releasing for GPUs about to change). */
  readonly statuses: readonly GpuStatus[];
}

export interface NodePlanInput {
  readonly snapshot: HostSnapshot;
  readonly spec: NodeGpuPassthroughSpec | undefined;
  /** GPUs a running pod holds (kubelet PodResources); `undefined` when kubelet could not be asked. */
  readonly inUse: ReadonlySet<string> | undefined;
  /** Which pod holds each GPU in `inUse` ("namespace/name"), for the status message. */
  readonly holders?: ReadonlyMap<string, string>;
  /** Groups vfio-handoff prepared on this node (state-dir records): only those are ever released. */
  readonly records: ReadonlyMap<number, GroupRecord>;
  /** Previous statuses, to keep lastTransitionTime stable when the phase does not change. */
  readonly previous: readonly GpuStatus[] | undefined;
  /** Failures of the last attempt per GPU (reason code + message), reported until the GPU recovers. */
  readonly failures?: ReadonlyMap<string, { reason: string; message: string }>;
  readonly now: string;
}

export function planNode(input: NodePlanInput): NodeActions {
  const { snapshot, spec } = input;
  const desired = new Map<string, DesiredGpu>((spec?.gpus ?? []).map((g) => [g.address, g]));
  const paused = spec?.paused ?? false;
  const prepareBoot: PciAddress[] = [];
  const prepareNormal: PciAddress[] = [];
  const release: PciAddress[] = [];
  const statuses: GpuStatus[] = [];

  const assessed = snapshot.gpus.map((gpu) => {
    const want = desired.get(gpu.fn.address);
    return { gpu, want, a: assessGpu(snapshot, gpu, { allowBootGpu: want?.allowBootGpu ?? false }) };
  });
  // vfio hands out an IOMMU group whole, so preparing a desired GPU also moves the other GPUs of its group
  // (two GPUs behind root ports without ACS). Releasing one of those would take the desired GPU back with
  // it, and the next pass would prepare it again: a GPU that shares a group with a desired, unblocked GPU
  // stays on vfio-pci until that GPU is given back too.
  const keptGroups = new Map<number, PciAddress>();
  for (const { gpu, want, a } of assessed) {
    if (want && a.verdict !== 'blocked' && gpu.fn.iommuGroup !== undefined && !keptGroups.has(gpu.fn.iommuGroup)) keptGroups.set(gpu.fn.iommuGroup, gpu.fn.address);
  }

  for (const { gpu, want, a } of assessed) {
    const failure = input.failures?.get(gpu.fn.address);
    let phase: GpuPhase;
    let reason: string | undefined;
    let message: string | undefined;
    if (want) {
      if (a.verdict === 'ready') {
        phase = 'Ready';
      } else if (a.verdict === 'blocked') {
        phase = 'Failed';
        reason = toReason(a.reasons[0]!.code);
        message = a.reasons.map((r) => r.message).join('; ');
      } else if (failure) {
        phase = 'Failed';
        ({ reason, message } = failure);
        if (!paused) (want.allowBootGpu ? prepareBoot : prepareNormal).push(gpu.fn.address); // retry
      } else if (paused) {
        phase = 'Host';
        reason = 'Paused';
      } else {
        phase = 'Preparing';
        (want.allowBootGpu ? prepareBoot : prepareNormal).push(gpu.fn.address);
      }
    } else {
      const ours = gpu.fn.iommuGroup !== undefined && input.records.has(gpu.fn.iommuGroup);
      // The one "on VFIO" rule (src/host/readiness.ts), the same the engine's `release --all` uses.
      const vfio = onVfio(snapshot, gpu.fn.address);
      if (ours && vfio && !paused) {
        phase = 'Releasing';
        const keeper = keptGroups.get(gpu.fn.iommuGroup!);
        if (input.inUse === undefined) {
          reason = 'InUseUnknown';
          message = 'kubelet PodResources could not be asked; not releasing a GPU a VM may hold';
        } else if (input.inUse.has(gpu.fn.address)) {
          reason = 'InUse';
          const pod = input.holders?.get(gpu.fn.address);
          message = pod ? `in use by pod ${pod}; released when the pod ends` : `a pod holds ${gpu.fn.address}; it is released when the pod ends`;
        } else if (keeper !== undefined) {
          // Checked after the pod: a GPU a pod holds says so, whatever else keeps it.
          reason = 'SharesIommuGroup';
          message = `shares IOMMU group ${gpu.fn.iommuGroup} with ${keeper}, which stays on vfio-pci (vfio hands out a group whole); released with it`;
        } else {
          release.push(gpu.fn.address);
        }
      } else if (vfio && !ours) {
        // Bound to vfio-pci by someone else (e.g. vfio-pci.ids=): advertised, never touched.
        phase = a.verdict === 'ready' ? 'Ready' : 'Host';
        reason = 'ExternallyBound';
      } else {
        phase = 'Host';
      }
    }
    // A GPU on its way back keeps the resource name it had, so the operator can show it under the policy
    // it is leaving (a node relabelled out of a policy while a pod holds the GPU).
    const keptName = phase === 'Releasing' ? input.previous?.find((p) => p.address === gpu.fn.address)?.resourceName : undefined;
    statuses.push(status(input, gpu.fn.address, phase, reason, message, want?.resourceName ?? keptName, gpu.fn.iommuGroup, gpu.fn.driver, gpu.fn.numaNode));
  }
  // Desired GPUs the host does not have.
  for (const want of desired.values()) {
    if (snapshot.gpus.some((g) => g.fn.address === want.address)) continue;
    statuses.push(status(input, want.address, 'Failed', 'NotFound', `no GPU ${want.address} on this node`, want.resourceName, undefined, undefined, undefined));
  }
  statuses.sort((x, y) => (x.address < y.address ? -1 : 1));
  return { prepare: { allowBootGpu: prepareBoot, normal: prepareNormal }, release, statuses };
}

/**
 * The engine intents for the actions of one pass — pure: the GPUs to prepare (with their boot-GPU
 * permission) and to release, leaving out those `due` says are still backing off after a failure.
 */
export function nodeIntents(actions: NodeActions, due: (address: PciAddress) => boolean): Intent[] {
  return [
    ...actions.prepare.allowBootGpu.filter(due).map((address) => ({ address, want: 'vfio' as const, allowBootGpu: true })),
    ...actions.prepare.normal.filter(due).map((address) => ({ address, want: 'vfio' as const, allowBootGpu: false })),
    ...actions.release.map((address) => ({ address, want: 'host' as const })),
  ];
}

function status(
  input: NodePlanInput,
  address: string,
  phase: GpuPhase,
  reason: string | undefined,
  message: string | undefined,
  resourceName: string | undefined,
  iommuGroup: number | undefined,
  driver: string | undefined,
  numaNode: number | undefined,
): GpuStatus {
  const prev = input.previous?.find((p) => p.address === address);
  const s: GpuStatus = { address, phase, lastTransitionTime: prev && prev.phase === phase ? prev.lastTransitionTime : input.now };
  if (reason) s.reason = reason;
  if (message) s.message = message.slice(0, 1024);
  if (resourceName) s.resourceName = resourceName;
  if (iommuGroup !== undefined) s.iommuGroup = iommuGroup;
  if (driver) s.driver = driver;
  if (numaNode !== undefined) s.numaNode = numaNode;
  return s;
}

/** Verdict reason codes become CamelCase condition-style reasons in the status. */
export function toReason(code: string): string {
  return code
    .toLowerCase()
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}
