import { InvalidArgumentError } from '../core/errors.js';
import { comparePciAddress, parsePciAddress, type PciAddress } from '../core/pci-address.js';
import type { HostSnapshot } from '../host/model.js';
import { extendedResourceNameProblem } from '../core/resource-name.js';

/**
 * The hand-over between the privileged agent and the unprivileged device plugin when they run as two
 * containers: the agent writes the per-address resource names its NodeGpuPassthrough spec asks for, the
 * plugin reads them. `generation` grows on every write so a pass that only changed bindings still changes
 * the file and the plugin rescans at once instead of at its next poll of the host.
 *
 * ```json
 * { "version": 1, "generation": 7, "names": { "0000:18:00.0": "example.com/h100" }, "withdrawn": ["0000:3b:00.0"] }
 * ```
 *
 * `withdrawn` (optional): GPUs the agent is giving back to the host; the plugin advertises them
 * Unhealthy so kubelet allocates them to no new pod before the agent re-checks PodResources and unbinds.
 */
export interface ResourceNamesDocument {
  readonly version: 1;
  readonly generation: number;
  readonly names: ReadonlyMap<PciAddress, string>;
  readonly withdrawn: ReadonlySet<PciAddress>;
}

/** Serialises deterministically (addresses sorted), so equal inputs give byte-equal files. */
export function formatResourceNames(names: ReadonlyMap<string, string>, generation: number, withdrawn: ReadonlySet<string> = new Set()): string {
  if (!Number.isSafeInteger(generation) || generation < 0) throw new InvalidArgumentError(`bad generation ${generation}`);
  const entries = [...names].map(([address, name]) => [checkEntry(address, name), name] as const);
  entries.sort(([a], [b]) => comparePciAddress(a, b));
  const out: Record<string, unknown> = { version: 1, generation, names: Object.fromEntries(entries) };
  if (withdrawn.size > 0) out['withdrawn'] = [...withdrawn].map(canonical).sort(comparePciAddress);
  return `${JSON.stringify(out, null, 2)}\n`;
}

function canonical(address: string): PciAddress {
  const parsed = parsePciAddress(address);
  if (parsed !== address) throw new InvalidArgumentError(`address ${JSON.stringify(address)} is not in canonical form (${parsed})`);
  return parsed;
}

/**
 * Parses and validates the whole document; any problem throws `InvalidArgumentError` naming it. The reader
 * treats a bad file as "no overrides" rather than applying part of it: half a rename is worse than none.
 */
export function parseResourceNames(text: string): ResourceNamesDocument {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`resource names file is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidArgumentError('resource names file must hold a JSON object');
  const doc = raw as { version?: unknown; generation?: unknown; names?: unknown; withdrawn?: unknown };
  if (doc.version !== 1) throw new InvalidArgumentError(`unsupported resource names file version ${JSON.stringify(doc.version)}`);
  const generation = doc.generation ?? 0;
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 0) {
    throw new InvalidArgumentError(`bad generation ${JSON.stringify(doc.generation)}`);
  }
  if (typeof doc.names !== 'object' || doc.names === null || Array.isArray(doc.names)) throw new InvalidArgumentError('"names" must be an object of address → resource name');
  const names = new Map<PciAddress, string>();
  for (const [address, name] of Object.entries(doc.names as Record<string, unknown>)) {
    if (typeof name !== 'string') throw new InvalidArgumentError(`resource name for ${address} is not a string`);
    names.set(checkEntry(address, name), name);
  }
  const withdrawn = new Set<PciAddress>();
  if (doc.withdrawn !== undefined) {
    if (!Array.isArray(doc.withdrawn) || !doc.withdrawn.every((a) => typeof a === 'string')) throw new InvalidArgumentError('"withdrawn" must be a list of PCI addresses');
    for (const a of doc.withdrawn as string[]) withdrawn.add(canonical(a));
  }
  return { version: 1, generation, names, withdrawn };
}

function checkEntry(address: string, name: string): PciAddress {
  // Full addresses only: the plugin compares them with discovery's, which are always full.
  const parsed = parsePciAddress(address);
  if (parsed !== address) throw new InvalidArgumentError(`address ${JSON.stringify(address)} is not in canonical form (${parsed})`);
  const problem = extendedResourceNameProblem(name);
  if (problem) throw new InvalidArgumentError(`resource name ${JSON.stringify(name)} for ${address}: ${problem}`);
  return parsed;
}

/**
 * What the agent publishes: the names, plus a digest of every function's binding (from the latest
 * snapshot it has). The agent writes the file (with the next generation) only when this key differs from
 * the last one written, so an idle node does not rewrite it every resync, yet a prepare/release is always
 * signalled.
 */
export function publicationKey(
  names: ReadonlyMap<string, string>,
  snapshot: Pick<HostSnapshot, 'functions' | 'vfioGroupNodes'> | undefined,
  withdrawn: ReadonlySet<string> = new Set(),
): string {
  const bindings = snapshot ? snapshot.functions.map((f) => `${f.address}=${f.driver ?? ''}`).join(',') : undefined;
  const sortedNames = [...names].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([sortedNames, bindings, snapshot?.vfioGroupNodes, [...withdrawn].sort()]);
}

/** The per-address names a NodeGpuPassthrough spec asks for (entries without a resourceName use the default). */
export function namesFromSpec(spec: { readonly gpus?: readonly { readonly address: string; readonly resourceName?: string }[] } | undefined): Map<string, string> {
  return new Map((spec?.gpus ?? []).filter((g) => g.resourceName).map((g) => [g.address, g.resourceName!]));
}
