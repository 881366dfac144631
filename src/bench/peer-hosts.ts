import { loadBuiltinProfile } from '../profiles/load.js';
import type { HostProfile, ProfileDevice } from '../profiles/profile.js';

/**
 * Hosts for the side-by-side device-plugin benchmark, as a device plugin sees them on a node whose GPUs were
 * bound at boot (`vfio-pci.ids=`): every NVIDIA function on vfio-pci, `/dev/vfio/<group>` present.
 */

function allNvidiaOnVfio(profile: HostProfile, name = profile.name): HostProfile {
  return {
    ...profile,
    name,
    loadedDrivers: [...new Set([...profile.loadedDrivers, 'vfio-pci'])],
    devices: profile.devices.map((d) => (d.vendor === '10de' ? { ...d, driver: 'vfio-pci' } : d)),
  };
}

/** The 16-GPU bench host (RTX A5000 + HDMI audio in each group). */
export async function bench16GpuHost(): Promise<HostProfile> {
  return allNvidiaOnVfio(await loadBuiltinProfile('bench-16gpu'));
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');
const shiftBus = (address: string, by: number): string => {
  const [dom, bus, rest] = address.split(':') as [string, string, string];
  return `${dom}:${hex2(parseInt(bus, 16) + by)}:${rest}`;
};

/**
 * An 8 × H100 PCIe server: the built-in `server-aspeed-4xh100` (hosts.md profiles 6a/6c: ASPEED boot VGA, one
 * root port and one IOMMU group per GPU, NUMA 0/1) with its four GPUs and their root ports repeated on the
 * next free buses (bus + 0x10, group + 200, BARs in a disjoint window), as the 8-slot variants of these
 * boards are laid out. Derived here rather than shipped as a built-in profile because it adds no new shape.
 */
export async function h100x8Host(): Promise<HostProfile> {
  const base = await loadBuiltinProfile('server-aspeed-4xh100');
  const gpus = base.devices.filter((d) => d.vendor === '10de');
  const ports = new Set(gpus.map((g) => g.parent).filter((p): p is string => p !== undefined));
  const copies: ProfileDevice[] = base.devices
    .filter((d) => ports.has(d.address) || d.vendor === '10de')
    .map((d) => ({
      ...d,
      address: shiftBus(d.address, 0x10),
      ...(d.parent !== undefined ? { parent: shiftBus(d.parent, 0x10) } : {}),
      ...(d.iommuGroup !== undefined ? { iommuGroup: d.iommuGroup + 200 } : {}),
      ...(d.bars !== undefined
        ? { bars: d.bars.map((b) => ({ ...b, start: `0x${(BigInt(b.start) + 0x8000000000n).toString(16)}` })) }
        : {}),
    }));
  return allNvidiaOnVfio({ ...base, devices: [...base.devices, ...copies] }, 'server-aspeed-8xh100');
}
