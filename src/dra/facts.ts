import { DeviceFacts } from '../devices/facts.js';
import type { GpuFacts } from '../devices/model.js';
import type { HostSnapshot } from '../host/model.js';
import type { HostReader } from '../sysfs/port.js';

/** The device source's facts of every GPU (model name, PCIe root, …) by address: what the ResourceSlice and the metadata file publish. */
export function gpuFactsReader(reader: HostReader): (snapshot: HostSnapshot) => Promise<ReadonlyMap<string, GpuFacts>> {
  const facts = new DeviceFacts({ reader });
  return async (snapshot) => new Map((await facts.describe(snapshot)).map((f) => [f.address, f]));
}
