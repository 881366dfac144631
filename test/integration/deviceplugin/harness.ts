import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CdiSpecWriter } from '../../../src/cdi/writer.js';
import { realClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { startDevicePlugins } from '../../../src/deviceplugin/manager.js';
import type { RunningDevicePlugins } from '../../../src/deviceplugin/manager.js';
import type { ResourceConfig } from '../../../src/deviceplugin/resources.js';
import { nodeSocketDir } from '../../../src/deviceplugin/socket-dir.js';
import { discoverHost } from '../../../src/host/discover.js';
import type { PluginRecorder } from '../../../src/metrics/recorders.js';
import type { HostProfile, ProfileDevice } from '../../../src/profiles/profile.js';
import type { HostReader } from '../../../src/sysfs/port.js';
import { FakeKubelet } from '../../support/fake-kubelet.js';

export const PCI_IDS = [
  '10de  NVIDIA Corporation',
  '\t2204  GA102 [GeForce RTX 3090]',
  '\t1aef  GA102 High Definition Audio Controller',
  '\t26b9  AD102GL [L40S]',
  '1a03  ASPEED Technology, Inc.',
  '\t2000  ASPEED Graphics Family',
  '',
].join('\n');

export const RTX = 'nvidia.com/GA102_GEFORCE_RTX_3090';
export const GPU0 = '0000:01:00.0';
export const AUDIO0 = '0000:01:00.1';
export const GPU1 = '0000:41:00.0';
export const AUDIO1 = '0000:41:00.1';

export function gpuDevice(address: string, group: number, numaNode: number): ProfileDevice {
  return {
    address,
    class: '0x030000',
    vendor: '10de',
    device: '2204',
    driver: 'vfio-pci',
    nativeDriver: 'nvidia',
    iommuGroup: group,
    numaNode,
    bootVga: false,
    bars: [{ index: 0, start: `0x${(0xa0000000 + group * 0x1000000).toString(16)}`, size: '16M' }],
    consumers: [`consumer:pci:${address.replace(/\.0$/, '.1')}`],
  };
}

export function audioDevice(address: string, group: number, numaNode: number): ProfileDevice {
  return { address, class: '0x040300', vendor: '10de', device: '1aef', driver: 'vfio-pci', nativeDriver: 'snd_hda_intel', iommuGroup: group, numaNode };
}

/** Two RTX 3090s, each with its HDMI audio function in the same IOMMU group, all on vfio-pci. */
export function twoRtxProfile(opts: { iommufd?: boolean } = {}): HostProfile {
  return {
    name: 'two-rtx3090-vfio',
    kernelRelease: '6.8.0-51-generic',
    iommu: true,
    iommufd: opts.iommufd ?? false,
    loadedDrivers: ['vfio-pci', 'nvidia', 'snd_hda_intel'],
    availableModules: ['vfio-pci'],
    devices: [
      { address: '0000:00:00.0', class: '0x060000', vendor: '8086', device: '09a2', iommuGroup: 0, numaNode: 0 },
      gpuDevice(GPU0, 12, 0),
      audioDevice(AUDIO0, 12, 0),
      gpuDevice(GPU1, 30, 1),
      audioDevice(AUDIO1, 30, 1),
    ],
  };
}

/** A reader that also serves some extra files (pci.ids) and can hide paths (a vanished /dev node). */
export function overlayReader(base: HostReader, files: Record<string, string>, hidden: Set<string> = new Set()): HostReader {
  return {
    readText: async (p) => (hidden.has(p) ? undefined : (files[p] ?? (await base.readText(p)))),
    readLink: async (p) => (hidden.has(p) ? undefined : base.readLink(p)),
    list: async (p) => (await base.list(p)).filter((n) => !hidden.has(`${p}/${n}`)),
    exists: async (p) => !hidden.has(p) && (p in files || (await base.exists(p))),
  };
}

export interface RecordedEvents {
  registered: [string, boolean][];
  reregistered: [string, string][];
  allocate: [string, boolean][];
  devices: [string, number, number][];
}

export function recordingRecorder(): PluginRecorder & { events: RecordedEvents } {
  const events: RecordedEvents = { registered: [], reregistered: [], allocate: [], devices: [] };
  return {
    events,
    registered: (r, ok) => void events.registered.push([r, ok]),
    reregistered: (r, t) => void events.reregistered.push([r, t]),
    allocate: (r, ok) => void events.allocate.push([r, ok]),
    devices: (r, h, u) => void events.devices.push([r, h, u]),
  };
}

export interface Rig {
  readonly dir: string;
  readonly kubelet: FakeKubelet;
  readonly recorder: ReturnType<typeof recordingRecorder>;
  readonly hidden: Set<string>;
  /** Full discovery passes so far. */
  scans: number;
  plugins: RunningDevicePlugins | undefined;
  start(opts?: { rescanIntervalMs?: number; resourceConfig?: ResourceConfig; noDirWatch?: boolean; cdi?: CdiSpecWriter }): Promise<RunningDevicePlugins>;
  cleanup(): Promise<void>;
}

/** A temp plugin dir with a fake kubelet in it, and a way to start the plugins over `reader`. */
export async function makeRig(reader: HostReader, opts: { kubelet?: boolean; dir?: string } = {}): Promise<Rig> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'vh-dp-')));
  const kubelet = opts.kubelet === false ? (undefined as unknown as FakeKubelet) : await FakeKubelet.start(dir);
  const recorder = recordingRecorder();
  const hidden = new Set<string>();
  const host = overlayReader(reader, { 'usr/share/misc/pci.ids': PCI_IDS }, hidden);
  const rig: Rig = {
    dir,
    kubelet,
    recorder,
    hidden,
    scans: 0,
    plugins: undefined,
    async start(o = {}) {
      rig.plugins = await startDevicePlugins({
        reader: host,
        scan: () => {
          rig.scans++;
          return discoverHost(host);
        },
        pluginDir: dir,
        resourceConfig: o.resourceConfig ?? {},
        clock: realClock,
        logger: silentLogger,
        recorder,
        rescanIntervalMs: o.rescanIntervalMs ?? 100,
        socketCheckIntervalMs: 200,
        backoff: { initialMs: 50, maxMs: 400 },
        // Without inotify only the periodic stat fallback sees the plugin directory change.
        socketDir: o.noDirWatch ? { ...nodeSocketDir, watch: () => ({ close: () => undefined }) } : nodeSocketDir,
        cdi: o.cdi,
      });
      return rig.plugins;
    },
    async cleanup() {
      await rig.plugins?.stop();
      await kubelet?.close();
      if (!opts.dir) await rm(dir, { recursive: true, force: true });
    },
  };
  return rig;
}
