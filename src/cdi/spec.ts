import type { HostSnapshot } from '../host/model.js';
import { isVfioDriver } from '../host/vendor.js';
import { groupDeviceNodes } from '../devices/allocation.js';
import { CDI_KIND, CDI_CLASS, CDI_VENDOR, deviceName } from '../devices/names.js';

/**
 * The CDI (Container Device Interface) spec of this node's GPUs: one device per GPU, kind
 * `handoff.dev/gpu`, device name `deviceName(address)`, container edits = the device nodes of the GPU's
 * IOMMU group (`/dev/vfio/vfio`, `/dev/vfio/<group>`, and `/dev/iommu` + `/dev/vfio/devices/vfioN` with
 * iommufd) — the same nodes the device plugin's DeviceSpecs name. Format: CDI SPEC.md (cncf-tags/
 * container-device-interface); the tests validate it against that repository's schema/schema.json at
 * v1.1.0 (test/fixtures/cdi-schema).
 */

/**
 * The spec version we write. We use no field newer than 0.3.0 (no hostPath, annotations, dotted class or
 * digit-first names), and SPEC.md lets a runtime refuse a version it does not know; 0.5.0 is known to every
 * CDI library a CDI-capable containerd (1.7+) or CRI-O vendors, and its minimum-version check accepts it.
 */
export const CDI_VERSION = '0.5.0';
/** One spec file per node, named `<vendor>-<class>.json` as the CDI tooling names them. */
export const CDI_SPEC_FILE = `${CDI_VENDOR}-${CDI_CLASS}.json`;
/** The runtime's dynamic CDI spec directory (containerd and CRI-O scan /etc/cdi and /var/run/cdi). */
export const DEFAULT_CDI_DIR = '/var/run/cdi';
/** cgroup device permissions for every node (read, write, mknod — the runtime default). */
export const CDI_PERMISSIONS = 'rwm';

export interface CdiDeviceNode {
  readonly path: string;
  readonly permissions: string;
}
export interface CdiDevice {
  readonly name: string;
  readonly containerEdits: { readonly deviceNodes: readonly CdiDeviceNode[] };
}
export interface CdiSpec {
  readonly cdiVersion: string;
  readonly kind: string;
  readonly devices: readonly CdiDevice[];
}

/**
 * The CDI devices for the snapshot's GPUs (those at `addresses` when given), sorted by address. Only GPUs
 * on vfio-pci (or a vfio-pci variant) whose `/dev/vfio/<group>` exists get a device: a runtime stats every
 * device node when it injects, so an entry naming a missing node would fail every container that asks for
 * it, and a GPU on its native driver cannot be passed through (its group node may still exist while its
 * audio function stays on vfio-pci). Readiness beyond that (viability, BAR claims) is the front end's
 * call: a GPU already given to a running VM must keep resolving when its container restarts. Pure.
 */
export function cdiDevices(snapshot: HostSnapshot, addresses?: ReadonlySet<string>): CdiDevice[] {
  const nodes = new Set(snapshot.vfioGroupNodes);
  const out: CdiDevice[] = [];
  for (const gpu of snapshot.gpus) {
    const group = gpu.fn.iommuGroup;
    if (addresses !== undefined && !addresses.has(gpu.fn.address)) continue;
    if (!snapshot.iommuEnabled || group === undefined || !nodes.has(group) || !isVfioDriver(gpu.fn.driver)) continue;
    out.push({
      name: deviceName(gpu.fn.address),
      containerEdits: { deviceNodes: groupDeviceNodes(snapshot, [group]).map((path) => ({ path, permissions: CDI_PERMISSIONS })) },
    });
  }
  return out;
}

/** The spec for `devices`; `undefined` when there are none (SPEC.md: a spec must list at least one device). */
export function buildCdiSpec(devices: readonly CdiDevice[]): CdiSpec | undefined {
  return devices.length === 0 ? undefined : { cdiVersion: CDI_VERSION, kind: CDI_KIND, devices };
}

/** Deterministic JSON text of a spec (equal specs give byte-equal files, so unchanged specs are not rewritten). */
export function formatCdiSpec(spec: CdiSpec): string {
  return `${JSON.stringify(spec, null, 2)}\n`;
}

/**
 * Whether a file in the CDI directory is ours: the spec file itself, an older spec of our kind under
 * another extension (`handoff.dev-gpu*.json|yaml`), or a temp file an interrupted write left behind
 * (`.handoff.dev-gpu.json.<pid>.<random>.tmp`, see writeFileAtomic). Other vendors' files are never ours.
 */
export function isOurSpecFile(name: string): boolean {
  const base = CDI_SPEC_FILE.replace(/\.json$/, '');
  return (name.startsWith(base) && /\.(json|ya?ml)$/.test(name)) || (name.startsWith(`.${CDI_SPEC_FILE}.`) && name.endsWith('.tmp'));
}
