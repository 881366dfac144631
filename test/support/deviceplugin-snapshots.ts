import type { PciAddress } from '../../src/core/pci-address.js';
import type { Gpu, HostSnapshot, PciFunction } from '../../src/host/model.js';

/** Hand-built HostSnapshots for device-plugin unit tests (no discovery, no kernel). */

export interface FnSpec {
  readonly address: string;
  readonly vendorId?: string;
  readonly deviceId?: string;
  readonly classCode?: number;
  readonly driver?: string | undefined;
  readonly group?: number | undefined;
  readonly numa?: number | undefined;
  readonly vfioDevices?: readonly string[];
  readonly isBridge?: boolean;
  /** Marks the function as a GPU; its companions are given by address. */
  readonly gpu?: { readonly companions?: readonly string[] };
}

export function fn(spec: FnSpec): PciFunction {
  return {
    address: spec.address as PciAddress,
    vendorId: spec.vendorId ?? '10de',
    deviceId: spec.deviceId ?? '2204',
    subsystemVendorId: undefined,
    subsystemDeviceId: undefined,
    classCode: spec.classCode ?? (spec.gpu ? 0x030000 : 0x040300),
    driver: 'driver' in spec ? spec.driver : 'vfio-pci',
    driverOverride: undefined,
    iommuGroup: spec.group,
    numaNode: spec.numa,
    bootVga: undefined,
    resetMethods: [],
    sriovTotalVfs: undefined,
    sriovNumVfs: undefined,
    physfn: undefined,
    isBridge: spec.isBridge ?? false,
    bars: [],
    vfioDevices: spec.vfioDevices ?? [],
  };
}

export function snapshot(specs: readonly FnSpec[], opts: { iommufd?: boolean; vfioGroupNodes?: readonly number[] } = {}): HostSnapshot {
  const functions = specs.map(fn).sort((a, b) => (a.address < b.address ? -1 : 1));
  const groupIds = [...new Set(functions.map((f) => f.iommuGroup).filter((g): g is number => g !== undefined))].sort((a, b) => a - b);
  const groups = groupIds.map((id) => ({ id, members: functions.filter((f) => f.iommuGroup === id).map((f) => f.address) }));
  const gpus: Gpu[] = specs
    .filter((s) => s.gpu)
    .map((s) => ({
      fn: functions.find((f) => f.address === s.address)!,
      kind: 'vga' as const,
      companions: (s.gpu!.companions ?? []) as PciAddress[],
      isBootGpu: false,
      framebuffers: [],
    }))
    .sort((a, b) => (a.fn.address < b.fn.address ? -1 : 1));
  return {
    kernel: { release: '6.8.0', major: 6, minor: 8 },
    iommuEnabled: true,
    vfioPci: { loaded: true, loadable: true },
    iommufd: opts.iommufd ?? false,
    vfioIommuType1: { loaded: true, loadable: true },
    vfioGroupNodes: opts.vfioGroupNodes ?? groupIds,
    functions,
    groups,
    gpus,
    framebuffers: [],
    vtconsoles: [],
  };
}

/** Two RTX 3090 style cards (GPU + HDMI audio per group) on NUMA 0 and 1. */
export function twoGpuHost(opts: { iommufd?: boolean } = {}): HostSnapshot {
  return snapshot(
    [
      { address: '0000:01:00.0', group: 12, numa: 0, gpu: { companions: ['0000:01:00.1'] }, vfioDevices: ['vfio0'] },
      { address: '0000:01:00.1', group: 12, numa: 0, deviceId: '1aef', vfioDevices: ['vfio1'] },
      { address: '0000:41:00.0', group: 30, numa: 1, gpu: { companions: ['0000:41:00.1'] }, vfioDevices: ['vfio2'] },
      { address: '0000:41:00.1', group: 30, numa: 1, deviceId: '1aef', vfioDevices: ['vfio3'] },
    ],
    opts,
  );
}
