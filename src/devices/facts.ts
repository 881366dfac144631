import type { PciAddress } from '../core/pci-address.js';
import type { Gpu, HostSnapshot } from '../host/model.js';
import * as P from '../sysfs/paths.js';
import type { HostReader } from '../sysfs/port.js';
import type { GpuFacts } from './model.js';
import { deviceName } from './names.js';
import { PciIds } from './pci-ids.js';

/**
 * The PCIe root complex in a `sys/bus/pci/devices/<address>` link target, e.g.
 * `../../../devices/pci0000:64/0000:64:01.0/0000:65:00.0` → `pci0000:64`: the first path component under
 * `devices/` of the form `pci<4 hex>:<2 hex>` — the kernel's name of the host bridge's root bus, and the
 * value Kubernetes' standard `resource.kubernetes.io/pcieRoot` attribute carries
 * (k8s.io/dynamic-resource-allocation deviceattribute: "a string value in the format `pci<domain>:<bus>`").
 * `undefined` when the target holds none (not a PCI device path, or no link).
 */
export function pcieRootFromSysfsLink(target: string | undefined): string | undefined {
  if (target === undefined) return undefined;
  const parts = target.split('/');
  const at = parts.indexOf('devices');
  const root = at >= 0 ? parts[at + 1] : undefined;
  return root !== undefined && /^pci[0-9a-f]{4}:[0-9a-f]{2}$/.test(root) ? root : undefined;
}

/** Reads the GPU's PCIe root through the host port (one readlink); `undefined` when it cannot be told. */
export async function readPcieRoot(reader: HostReader, address: PciAddress): Promise<string | undefined> {
  return pcieRootFromSysfsLink(await reader.readLink(P.pciDevice(address)));
}

/** The facts of one GPU from the snapshot, plus the two values discovery does not read. Pure. */
export function gpuFacts(gpu: Gpu, extra: { readonly modelName?: string | undefined; readonly pcieRoot?: string | undefined } = {}): GpuFacts {
  const fn = gpu.fn;
  return {
    address: fn.address,
    name: deviceName(fn.address),
    iommuGroup: fn.iommuGroup,
    vendorId: fn.vendorId,
    deviceId: fn.deviceId,
    subsystemVendorId: fn.subsystemVendorId,
    subsystemDeviceId: fn.subsystemDeviceId,
    classCode: fn.classCode,
    kind: gpu.kind,
    modelName: extra.modelName,
    numaNode: fn.numaNode,
    pcieRoot: extra.pcieRoot,
    bootGpu: gpu.isBootGpu,
    companions: gpu.companions,
    driver: fn.driver,
    physfn: fn.physfn,
  };
}

export interface DeviceFactsDeps {
  /** Reads pci.ids and the sysfs device links; never written to. */
  readonly reader: HostReader;
  /** Shared pci.ids cache (the device plugin's resource naming reads the same file). */
  readonly pciIds?: PciIds;
}

/** Describes the GPUs of a snapshot: `gpuFacts` with the model name (pci.ids) and PCIe root (sysfs link). */
export class DeviceFacts {
  private readonly pciIds: PciIds;

  constructor(private readonly deps: DeviceFactsDeps) {
    this.pciIds = deps.pciIds ?? new PciIds({ reader: deps.reader });
  }

  /** Facts of one GPU. Host read errors (`HostReadError`) propagate. */
  async of(gpu: Gpu): Promise<GpuFacts> {
    const [modelName, pcieRoot] = await Promise.all([this.pciIds.deviceName(gpu.fn.vendorId, gpu.fn.deviceId), readPcieRoot(this.deps.reader, gpu.fn.address)]);
    return gpuFacts(gpu, { modelName, pcieRoot });
  }

  /** Facts of every GPU of the snapshot (or of those at `addresses`), sorted by address. */
  async describe(snapshot: HostSnapshot, addresses?: ReadonlySet<string>): Promise<GpuFacts[]> {
    const gpus = snapshot.gpus.filter((g) => addresses === undefined || addresses.has(g.fn.address));
    return Promise.all(gpus.map((g) => this.of(g)));
  }
}
