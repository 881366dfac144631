import { loadBuiltinProfile } from '../profiles/load.js';
import type { HostProfile } from '../profiles/profile.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';

/**
 * The `bench-16gpu` host as the plugin sees it on a node bound with `vfio-pci.ids=`: every NVIDIA
 * function (16 GPUs + their HDMI audio) already on vfio-pci, so all 16 GPUs are advertised.
 */
export async function benchPluginKernel(): Promise<SimulatedKernel> {
  const profile = await loadBuiltinProfile('bench-16gpu');
  const vfio: HostProfile = {
    ...profile,
    loadedDrivers: [...new Set([...profile.loadedDrivers, 'vfio-pci'])],
    devices: profile.devices.map((d) => (d.vendor === '10de' ? { ...d, driver: 'vfio-pci' } : d)),
  };
  return new SimulatedKernel(vfio);
}
