import { JournalError } from '../core/errors.js';
import type { DraFiles } from './files-node.js';

/** One device of a prepared claim, as NodePrepareResources answered it. */
export interface PreparedClaimDevice {
  readonly request: string;
  readonly pool: string;
  readonly device: string;
  readonly address: string;
  readonly cdiDeviceIds: readonly string[];
  /** False when the GPU was on vfio-pci before this claim: unprepare leaves it there. */
  readonly releaseOnUnprepare: boolean;
}

export interface PreparedClaim {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly devices: readonly PreparedClaimDevice[];
  /** Files written for the claim (device-metadata files, its CDI spec), removed on unprepare. */
  readonly files: readonly string[];
}

/**
 * The claims this driver has prepared, keyed by UID, in `<state-dir>/dra-claims.json` (written atomically:
 * temp file + fsync + rename). It survives agent and kubelet restarts, so a prepare repeated after a
 * restart answers exactly as before and an unprepare after a restart knows what to give back.
 */
export interface ClaimCheckpoint {
  load(): Promise<Map<string, PreparedClaim>>;
  save(claims: ReadonlyMap<string, PreparedClaim>): Promise<void>;
}

export const CHECKPOINT_FILE = 'dra-claims.json';
const VERSION = 1;

export class FileClaimCheckpoint implements ClaimCheckpoint {
  constructor(
    private readonly path: string,
    private readonly files: DraFiles,
  ) {}

  async load(): Promise<Map<string, PreparedClaim>> {
    const text = await this.files.read(this.path);
    return text === undefined ? new Map() : parseCheckpoint(text, this.path);
  }

  async save(claims: ReadonlyMap<string, PreparedClaim>): Promise<void> {
    await this.files.writeAtomic(this.path, `${JSON.stringify({ version: VERSION, claims: Object.fromEntries(claims) }, null, 2)}\n`);
  }
}

/** In-memory checkpoint for tests and the demo (`save` keeps a copy, as a file would). */
export class MemoryClaimCheckpoint implements ClaimCheckpoint {
  private text: string | undefined;
  async load(): Promise<Map<string, PreparedClaim>> {
    return this.text === undefined ? new Map() : parseCheckpoint(this.text, 'memory');
  }
  async save(claims: ReadonlyMap<string, PreparedClaim>): Promise<void> {
    this.text = JSON.stringify({ version: VERSION, claims: Object.fromEntries(claims) });
  }
}

/** A checkpoint we cannot read is refused (JournalError), never taken as "nothing prepared": that would leak GPUs. */
export function parseCheckpoint(text: string, where: string): Map<string, PreparedClaim> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new JournalError(`DRA claim checkpoint ${where} is not JSON: ${(err as Error).message}`);
  }
  const v = value as { version?: unknown; claims?: unknown };
  if (v?.version !== VERSION || typeof v.claims !== 'object' || v.claims === null || Array.isArray(v.claims)) {
    throw new JournalError(`DRA claim checkpoint ${where} has an unknown shape (want {"version":${VERSION},"claims":{...}})`);
  }
  const out = new Map<string, PreparedClaim>();
  for (const [uid, c] of Object.entries(v.claims as Record<string, PreparedClaim>)) {
    if (c?.uid !== uid || !Array.isArray(c.devices) || !Array.isArray(c.files)) throw new JournalError(`DRA claim checkpoint ${where}: entry ${uid} is malformed`);
    out.set(uid, c);
  }
  return out;
}
