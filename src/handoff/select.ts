import { InvalidArgumentError, NotAGpuError, NotFoundError } from '../core/errors.js';
import { parsePciAddress, parseVendorDevice, type PciAddress } from '../core/pci-address.js';
import type { Gpu, HostSnapshot } from '../host/model.js';

export type GpuSelector =
  | { readonly kind: 'address'; readonly address: PciAddress }
  | { readonly kind: 'id'; readonly vendorId: string; readonly deviceId: string };

/**
 * Parses user selectors: a PCI address (`0000:65:00.0`, or lspci's `65:00.0`) or `vendor:device`
 * (`10de:2331`). Everything else — paths, `..`, NUL, globs — is an InvalidArgumentError before any
 * value can reach the host.
 */
export function parseSelectors(raw: readonly string[]): GpuSelector[] {
  return raw.map((r) => {
    if (/^(?:0x)?[0-9a-fA-F]{4}:(?:0x)?[0-9a-fA-F]{4}$/.test(r)) {
      const { vendorId, deviceId } = parseVendorDevice(r);
      return { kind: 'id', vendorId, deviceId };
    }
    try {
      return { kind: 'address', address: parsePciAddress(r, { allowShort: true }) };
    } catch {
      throw new InvalidArgumentError(
        `not a GPU selector: ${JSON.stringify(r)} (use a PCI address like 0000:65:00.0 or vendor:device like 10de:2331)`,
      );
    }
  });
}

/** Resolves selectors to GPUs, in address order, each once. Unknown and non-GPU addresses are errors. */
export function resolveSelectors(snapshot: HostSnapshot, selectors: readonly GpuSelector[]): Gpu[] {
  const chosen = new Map<PciAddress, Gpu>();
  for (const s of selectors) {
    if (s.kind === 'address') {
      const gpu = snapshot.gpus.find((g) => g.fn.address === s.address);
      if (gpu) {
        chosen.set(gpu.fn.address, gpu);
        continue;
      }
      const fn = snapshot.functions.find((f) => f.address === s.address);
      if (!fn) throw new NotFoundError(`no PCI device ${s.address} on this host`);
      const owner = snapshot.gpus.find((g) => g.companions.includes(s.address));
      throw new NotAGpuError(
        owner
          ? `${s.address} is not a GPU: it is a companion function of ${owner.fn.address}; select the GPU and its whole IOMMU group moves with it`
          : `${s.address} is not a GPU (class 0x${fn.classCode.toString(16).padStart(6, '0')})`,
      );
    }
    const matches = snapshot.gpus.filter((g) => g.fn.vendorId === s.vendorId && g.fn.deviceId === s.deviceId);
    if (matches.length === 0) throw new NotFoundError(`no GPU with id ${s.vendorId}:${s.deviceId} on this host`);
    for (const g of matches) chosen.set(g.fn.address, g);
  }
  return [...chosen.values()].sort((a, b) => (a.fn.address < b.fn.address ? -1 : 1));
}
