import { PCI_IDS_PATHS } from '../sysfs/paths.js';
import type { HostReader } from '../sysfs/port.js';

/**
 * Device names from the host's pci.ids. The file is ~1.3 MB with ~2,500 vendors and we need one or two,
 * so it is read once and only the requested vendor's block is split into lines (on first use).
 */
export class PciIds {
  private text: Promise<string | undefined> | undefined;
  private readonly vendors = new Map<string, ReadonlyMap<string, string>>();

  constructor(private readonly deps: { readonly reader: HostReader; readonly paths?: readonly string[] }) {}

  /** The device name (e.g. `AD102 [GeForce RTX 4090]`), or `undefined` when the file or entry is missing. */
  async deviceName(vendorId: string, deviceId: string): Promise<string | undefined> {
    const vendor = vendorId.toLowerCase();
    let devices = this.vendors.get(vendor);
    if (!devices) {
      const text = await this.load();
      devices = text === undefined ? new Map() : parseVendorBlock(text, vendor);
      this.vendors.set(vendor, devices);
    }
    return devices.get(deviceId.toLowerCase());
  }

  private load(): Promise<string | undefined> {
    this.text ??= (async () => {
      for (const path of this.deps.paths ?? PCI_IDS_PATHS) {
        const text = await this.deps.reader.readText(path);
        if (text !== undefined) return text;
      }
      return undefined;
    })();
    return this.text;
  }
}

/**
 * Parses one vendor's block: the vendor line is `vvvv  Name` at column 0; its devices are `\tdddd  Name`;
 * subsystem lines (`\t\t`) and comments are skipped; the block ends at the next line that does not start
 * with a tab or `#` (the next vendor, or the `C` class section).
 */
export function parseVendorBlock(text: string, vendorId: string): ReadonlyMap<string, string> {
  const devices = new Map<string, string>();
  const vendor = vendorId.toLowerCase();
  let at = text.startsWith(`${vendor}  `) ? 0 : text.indexOf(`\n${vendor}  `);
  if (at < 0) return devices;
  if (at > 0) at += 1;
  let pos = text.indexOf('\n', at);
  while (pos >= 0 && pos < text.length) {
    const next = text.indexOf('\n', pos + 1);
    const line = text.slice(pos + 1, next < 0 ? text.length : next).replace(/\r$/, '');
    pos = next;
    if (line === '' || line.startsWith('#') || line.startsWith('\t\t')) continue;
    if (!line.startsWith('\t')) break;
    const m = /^\t([0-9a-fA-F]{4})\s+(.*\S)\s*$/.exec(line);
    if (m) devices.set(m[1]!.toLowerCase(), m[2]!);
  }
  return devices;
}
