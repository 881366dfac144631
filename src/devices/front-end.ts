import { InvalidArgumentError } from '../core/errors.js';

/**
 * How this node offers its GPUs to Kubernetes. Exactly one front end per node, chosen when the agent
 * starts (`vfio-handoff agent --front-end device-plugin|dra`):
 * - `device-plugin`: kubelet's device-plugin API (extended resources, `PCI_RESOURCE_*` env for KubeVirt's
 *   `permittedHostDevices`); GPUs are handed to vfio-pci ahead of time by the NodeGpuPassthrough spec.
 * - `dra`: a DRA kubelet plugin (ResourceSlices, claims); a GPU goes to vfio-pci when a claim for it is
 *   prepared.
 *
 * Why per node and not per GPU: KubeVirt forbids mixing DRA and device-plugin GPUs on one node (VEP 10,
 * research/dra.md), and two front ends offering one GPU would let kubelet give it to a device-plugin pod
 * and the scheduler to a claim at once. Per node keeps the rule trivially true: the agent builds one front
 * end over the one device source, so no GPU can be offered twice. (A per-GPU split would need a second
 * source of truth for "which front end owns this GPU" in both processes; nothing asks for it yet.)
 */
export type FrontEnd = 'device-plugin' | 'dra';
export const FRONT_ENDS: readonly FrontEnd[] = ['device-plugin', 'dra'];
export const DEFAULT_FRONT_END: FrontEnd = 'device-plugin';

/** Parses a `--front-end` value; `InvalidArgumentError` naming the choices otherwise. */
export function parseFrontEnd(raw: string): FrontEnd {
  if ((FRONT_ENDS as readonly string[]).includes(raw)) return raw as FrontEnd;
  throw new InvalidArgumentError(`--front-end must be one of ${FRONT_ENDS.join(', ')}, not ${JSON.stringify(raw)}`);
}
