import type { PciAddress } from '../core/pci-address.js';
import type { HostReader } from '../sysfs/port.js';
import { pciDeviceEntry, vfioGroupNode } from '../sysfs/paths.js';

/** A process holding one of a PCI function's device files open (what `fuser` would show). */
export interface DeviceFileUser {
  readonly address: PciAddress;
  readonly pid: number;
  readonly command: string;
  readonly path: string;
}

/**
 * The /dev paths through which host processes can hold a function: DRM nodes, the legacy fbdev node,
 * ALSA nodes of its sound card, NVIDIA's /dev/nvidiaN, and — for functions on vfio-pci — the group node
 * a VMM opens. Read from sysfs/procfs only; nothing is opened (opening /dev/vfio/N would steal it).
 */
export async function deviceFilesOf(reader: HostReader, address: PciAddress, iommuGroup: number | undefined): Promise<string[]> {
  const [drm, graphics, sound, nvidiaInfo] = await Promise.all([
    reader.list(pciDeviceEntry(address, 'drm')),
    reader.list(pciDeviceEntry(address, 'graphics')),
    reader.list(pciDeviceEntry(address, 'sound')),
    reader.readText(`proc/driver/nvidia/gpus/${address}/information`),
  ]);
  const paths: string[] = [];
  for (const d of drm) if (/^(card|renderD)\d+$/.test(d)) paths.push(`/dev/dri/${d}`);
  for (const g of graphics) if (/^fb\d+$/.test(g)) paths.push(`/dev/${g}`);
  for (const s of sound) {
    const m = /^card(\d+)$/.exec(s);
    if (m) paths.push(`/dev/snd/controlC${m[1]}`, `/dev/snd/pcmC${m[1]}D`);
  }
  const minor = nvidiaInfo && /Device Minor:\s*(\d+)/.exec(nvidiaInfo);
  if (minor) paths.push(`/dev/nvidia${minor[1]}`);
  if (iommuGroup !== undefined) paths.push(`/${vfioGroupNode(iommuGroup)}`);
  return paths;
}

/**
 * Scans /proc/<pid>/fd for links to the given device files. Prefix entries (ALSA `pcmC1D`) match any
 * device of that card. Processes that vanish mid-scan are skipped.
 */
export async function findDeviceFileUsers(
  reader: HostReader,
  wanted: ReadonlyMap<PciAddress, readonly string[]>,
): Promise<DeviceFileUser[]> {
  if ([...wanted.values()].every((p) => p.length === 0)) return [];
  const pids = (await reader.list('proc')).filter((p) => /^\d+$/.test(p));
  const users: DeviceFileUser[] = [];
  await Promise.all(
    pids.map(async (pid) => {
      const fds = await reader.list(`proc/${pid}/fd`).catch(() => [] as string[]);
      if (fds.length === 0) return;
      const targets = await Promise.all(fds.map((fd) => reader.readLink(`proc/${pid}/fd/${fd}`).catch(() => undefined)));
      const hits = new Set<string>();
      for (const t of targets) {
        if (!t) continue;
        for (const [address, paths] of wanted) {
          for (const p of paths) {
            if (t === p || (p.endsWith('D') && t.startsWith(p))) hits.add(`${address}\u0000${t}`);
          }
        }
      }
      if (hits.size === 0) return;
      const command = ((await reader.readText(`proc/${pid}/comm`).catch(() => undefined)) ?? '?').trim();
      for (const h of hits) {
        const [address, path] = h.split('\u0000') as [PciAddress, string];
        users.push({ address, pid: Number(pid), command, path });
      }
    }),
  );
  return users.sort((a, b) => a.pid - b.pid || a.path.localeCompare(b.path));
}
