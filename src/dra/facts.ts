import { PciIds } from '../deviceplugin/pci-ids.js';
import type { HostSnapshot } from '../host/model.js';
import type { HostReader } from '../sysfs/port.js';
import { pcieRootOf, type GpuFacts } from './slice.js';

/** The per-GPU facts the ResourceSlice and the metadata file publish, read through the host port. */
export function gpuFactsReader(reader: HostReader): (snapshot: HostSnapshot) => Promise<ReadonlyMap<string, GpuFacts>> {
  const ids = new PciIds({ reader });
  return async (snapshot) => {
    const out = new Map<string, GpuFacts>();
    for (const gpu of snapshot.gpus) {
      out.set(gpu.fn.address, { gpu, pcieRoot: await pcieRootOf(reader, gpu.fn.address), model: await ids.deviceName(gpu.fn.vendorId, gpu.fn.deviceId) });
    }
    return out;
  };
}
