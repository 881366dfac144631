import { describe, expect, it } from 'vitest';
import { computeDeviceSets } from '../deviceplugin/devices.js';
import { discoverHost } from '../host/discover.js';
import { validateProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { bench16GpuHost, h100x8Host } from './peer-hosts.js';

describe('hosts of the side-by-side device-plugin benchmark', () => {
  it.each([
    ['bench-16gpu', bench16GpuHost, 16, '10de:2231'],
    ['8 × H100', h100x8Host, 8, '10de:2331'],
  ] as const)('%s: a valid profile whose GPUs are all on vfio-pci, each in its own viable group, all advertised Healthy', async (_n, load, gpus, id) => {
    const profile = validateProfile(await load());
    const addresses = profile.devices.map((d) => d.address);
    expect(new Set(addresses).size).toBe(addresses.length);
    const snapshot = await discoverHost(new SimulatedKernel(profile));
    const nvidia = snapshot.gpus.filter((g) => g.fn.vendorId === '10de');
    expect(nvidia).toHaveLength(gpus);
    expect(new Set(nvidia.map((g) => g.fn.iommuGroup)).size).toBe(gpus);
    // The ASPEED boot VGA is a GPU too, but on ast: never advertised.
    const sets = computeDeviceSets(snapshot, (g) => `handoff.dev/${g.fn.vendorId}-${g.fn.deviceId}`);
    const devices = [...sets.values()].flat();
    expect(devices).toHaveLength(gpus);
    expect(devices.every((d) => d.health === 'Healthy')).toBe(true);
    expect([...sets.keys()]).toEqual([`handoff.dev/${id.replace(':', '-')}`]);
  });

  it('8 × H100 keeps the boot VGA on ast and spreads the GPUs over both NUMA nodes', async () => {
    const snapshot = await discoverHost(new SimulatedKernel(await h100x8Host()));
    const nvidia = snapshot.gpus.filter((g) => g.fn.vendorId === '10de');
    expect(nvidia.filter((g) => g.fn.numaNode === 0)).toHaveLength(4);
    expect(nvidia.filter((g) => g.fn.numaNode === 1)).toHaveLength(4);
    expect(snapshot.functions.find((f) => f.vendorId === '1a03' && f.deviceId === '2000')?.driver).toBe('ast');
  });
});
