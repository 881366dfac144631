import { parsePciAddress, pciAddressParts } from '../core/pci-address.js';
import { InvalidArgumentError } from '../core/errors.js';

/**
 * GetPreferredAllocation as a pure, deterministic choice: keep every must-include device, then fill up
 * from one NUMA node (the must-include devices' node, else the node that fits the request most tightly),
 * then by PCIe locality (same bus first, then the nearest bus in the same domain), then by address.
 */

export interface DeviceLocality {
  readonly id: string;
  readonly numaNode: number | undefined;
}

export interface PreferredRequest {
  readonly available: readonly string[];
  readonly mustInclude: readonly string[];
  readonly size: number;
}

interface Candidate {
  readonly id: string;
  readonly numa: number; // -1 = unknown: its own bucket, never mixed with a real node by preference
  readonly domain: number;
  readonly bus: number;
}

function toCandidate(id: string, numaOf: (id: string) => number | undefined): Candidate {
  let domain = Number.MAX_SAFE_INTEGER;
  let bus = Number.MAX_SAFE_INTEGER;
  try {
    const p = pciAddressParts(parsePciAddress(id));
    domain = p.domain;
    bus = p.bus;
  } catch {
    // Not a PCI address: no locality, ordered last by id.
  }
  return { id, numa: numaOf(id) ?? -1, domain, bus };
}

function busDistance(a: Candidate, b: Candidate): number {
  if (a.domain !== b.domain) return Number.MAX_SAFE_INTEGER;
  return Math.abs(a.bus - b.bus);
}

export function preferredAllocation(req: PreferredRequest, numaOf: (id: string) => number | undefined): string[] {
  if (!Number.isInteger(req.size) || req.size < 0) throw new InvalidArgumentError(`allocation size ${req.size} is invalid`);
  const available = [...new Set(req.available)].sort();
  const chosen: Candidate[] = [...new Set(req.mustInclude)].sort().map((id) => toCandidate(id, numaOf));
  if (chosen.length >= req.size) return chosen.map((c) => c.id);

  const chosenIds = new Set(chosen.map((c) => c.id));
  let pool = available.filter((id) => !chosenIds.has(id)).map((id) => toCandidate(id, numaOf));
  const needed = req.size - chosen.length;

  // The NUMA node to pack onto: where the must-include devices are (majority, lowest id on ties);
  // otherwise the smallest node that still fits everything (keeps big nodes free), else the biggest.
  const count = (items: readonly Candidate[]): Map<number, number> => {
    const m = new Map<number, number>();
    for (const c of items) m.set(c.numa, (m.get(c.numa) ?? 0) + 1);
    return m;
  };
  let target: number | undefined;
  const mustCounts = [...count(chosen)].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  if (mustCounts.length > 0) target = mustCounts[0]![0];
  else {
    const poolCounts = [...count(pool)];
    const fitting = poolCounts.filter(([, n]) => n >= needed).sort((a, b) => a[1] - b[1] || a[0] - b[0]);
    const largest = [...poolCounts].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    target = (fitting[0] ?? largest[0])?.[0];
  }

  while (chosen.length < req.size && pool.length > 0) {
    const score = (c: Candidate): [number, number, number] => {
      const numaMiss = c.numa === target ? 0 : 1;
      const dist = chosen.length === 0 ? 0 : Math.min(...chosen.map((s) => busDistance(s, c)));
      // With nothing chosen yet, start on the bus holding the most candidates of the target node.
      const crowd = chosen.length === 0 ? -pool.filter((p) => p.numa === c.numa && p.domain === c.domain && p.bus === c.bus).length : 0;
      return [numaMiss, dist, crowd];
    };
    let best = pool[0]!;
    let bestScore = score(best);
    for (const c of pool.slice(1)) {
      const s = score(c);
      if (s[0] < bestScore[0] || (s[0] === bestScore[0] && (s[1] < bestScore[1] || (s[1] === bestScore[1] && s[2] < bestScore[2])))) {
        best = c;
        bestScore = s;
      }
    }
    chosen.push(best);
    pool = pool.filter((c) => c !== best);
  }
  return chosen.map((c) => c.id);
}
