import type { Logger } from '../core/logger.js';
import type { HostSnapshot } from '../host/model.js';
import { buildCdiSpec, CDI_SPEC_FILE, cdiDevices, formatCdiSpec, isOurSpecFile } from './spec.js';

/**
 * The CDI spec directory, a node path like the state directory (given by flag, never under --host-root:
 * the runtime reads it on the node). The adapter over node:fs is src/state/spec-dir.ts.
 */
export interface SpecDir {
  /** Where it is (for logs). */
  readonly path: string;
  /** Entry names; `[]` when the directory does not exist. */
  list(): Promise<string[]>;
  /** File contents, or `undefined` when absent. */
  read(name: string): Promise<string | undefined>;
  /** Atomic write: a reader sees the old file or the new one; a failed write leaves no temp file behind. */
  writeAtomic(name: string, text: string): Promise<void>;
  /** Removes a file; absent is fine. */
  remove(name: string): Promise<void>;
}

export interface CdiSyncResult {
  /** Device names in the spec now (empty: no spec file). */
  readonly devices: readonly string[];
  /** Whether the spec file was written or removed by this call. */
  readonly changed: boolean;
  /** Stale files of ours that were removed (old extensions, leftover temp files). */
  readonly removed: readonly string[];
}

export interface CdiSpecWriterDeps {
  readonly dir: SpecDir;
  readonly logger: Logger;
}

/**
 * Keeps `<cdi-dir>/handoff.dev-gpu.json` equal to the GPUs a snapshot can hand to a container. Called by
 * a front end after every change of the host (device plugin: each scan and before Allocate answers; DRA:
 * after prepare and unprepare). Calls are serialised. The file is written only when its text changes
 * (it is read back each time, so a file deleted by hand comes back at the next sync), removed when no
 * device is left, and stale files of ours are removed — two spec files naming one device make the CDI
 * registry refuse the device as conflicting. Write errors reject (the caller decides: a scan logs and
 * retries, Allocate fails); they never leave a temp file.
 */
export class CdiSpecWriter {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: CdiSpecWriterDeps) {}

  /** Syncs the spec to `snapshot` (only the GPUs at `addresses`, when given). */
  sync(snapshot: HostSnapshot, addresses?: ReadonlySet<string>): Promise<CdiSyncResult> {
    const run = this.chain.catch(() => undefined).then(() => this.syncOnce(snapshot, addresses));
    this.chain = run;
    return run;
  }

  private async syncOnce(snapshot: HostSnapshot, addresses: ReadonlySet<string> | undefined): Promise<CdiSyncResult> {
    const { dir, logger } = this.deps;
    const spec = buildCdiSpec(cdiDevices(snapshot, addresses));
    const removed: string[] = [];
    for (const name of await dir.list()) {
      if (name === CDI_SPEC_FILE || !isOurSpecFile(name)) continue;
      await dir.remove(name);
      removed.push(name);
    }
    if (removed.length > 0) logger.info({ dir: dir.path, removed }, 'removed stale CDI spec files');
    const current = await dir.read(CDI_SPEC_FILE);
    let changed = false;
    if (spec === undefined) {
      if (current !== undefined) {
        await dir.remove(CDI_SPEC_FILE);
        changed = true;
        logger.info({ dir: dir.path, file: CDI_SPEC_FILE }, 'no GPU to describe: CDI spec removed');
      }
      return { devices: [], changed, removed };
    }
    const text = formatCdiSpec(spec);
    if (text !== current) {
      await dir.writeAtomic(CDI_SPEC_FILE, text);
      changed = true;
      logger.info({ dir: dir.path, file: CDI_SPEC_FILE, devices: spec.devices.map((d) => d.name) }, 'CDI spec written');
    }
    return { devices: spec.devices.map((d) => d.name), changed, removed };
  }
}
