import type { Clock } from '../core/clock.js';
import { ConflictError, InvalidArgumentError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CdiSpecWriter } from '../cdi/writer.js';
import type { Gpu, HostSnapshot } from '../host/model.js';
import type { PluginRecorder } from '../metrics/recorders.js';
import type { HostReader } from '../sysfs/port.js';
import { buildContainerAllocateResponse, checkAllocateRequest } from './allocate.js';
import { KUBELET_SOCKET, loadDevicePluginApi } from './api.js';
import type { AllocateRequest, AllocateResponse, DevicePluginApi, PreferredAllocationRequest, PreferredAllocationResponse } from './api.js';
import { computeDeviceSets, diffDeviceSets, envVarClashes, toWireDevice } from './devices.js';
import type { DeviceSets, PluginDevice } from './devices.js';
import { ResourcePlugin } from './lifecycle.js';
import type { Backoff } from './lifecycle.js';
import { PciIds } from '../devices/pci-ids.js';
import { preferredAllocation } from './preferred.js';
import { revalidateDevices } from '../devices/revalidate.js';
import { hostFingerprint } from '../devices/fingerprint.js';
import { compileResourceConfig, defaultResourceName, overrideFor, pciResourceEnvVar, socketFileName } from './resources.js';
import type { ResourceConfig, ResourceNamer } from './resources.js';
import { nodeSocketDir } from './socket-dir.js';
import type { DirWatch, SocketDir } from './socket-dir.js';

export interface DevicePluginManagerDeps {
  /** Reads the host: pci.ids for names, and the few links Allocate re-checks. Never written to. */
  readonly reader: HostReader;
  /** One discovery pass (the engine's `discoverHost`); the only source of devices. */
  readonly scan: () => Promise<HostSnapshot>;
  readonly pluginDir: string;
  readonly resourceConfig?: ResourceConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly recorder: PluginRecorder;
  /**
   * Poll interval; default 500 ms, so a host change reaches kubelet well within 1 s. Each poll reads a
   * cheap fingerprint of the state readiness depends on and runs `scan` only when it changed.
   */
  readonly rescanIntervalMs?: number;
  /** A full `scan` at least this often even when the fingerprint is unchanged (default 30 s). */
  readonly fullRescanIntervalMs?: number;
  /** Fallback poll of the plugin dir for when inotify misses a kubelet restart. */
  readonly socketCheckIntervalMs?: number;
  readonly socketDir?: SocketDir;
  readonly api?: DevicePluginApi;
  readonly backoff?: Backoff;
  readonly registerTimeoutMs?: number;
  /**
   * CDI on (`--cdi`): keeps the CDI spec current after every scan and answers Allocate with CDI device IDs
   * (`handoff.dev/gpu=gpu-…`) instead of DeviceSpecs. Off (absent): kubelet sees exactly what it saw before.
   */
  readonly cdi?: CdiSpecWriter;
}

/**
 * Owns one ResourcePlugin per resource: rescans the host, diffs the device sets, starts servers for
 * resources that appear, pushes ListAndWatch updates on change only, and stops servers whose resource
 * vanished. Also watches the plugin directory for kubelet restarts.
 */
export class DevicePluginManager {
  private readonly plugins = new Map<string, ResourcePlugin>();
  private sets: DeviceSets = new Map();
  private snapshot: HostSnapshot | undefined;
  private readonly names = new Map<string, string>(); // GPU address → resource name
  private addressOverrides: ReadonlyMap<string, string> = new Map();
  private withdrawn: ReadonlySet<string> = new Set();
  private reportedClashes: string | undefined;
  private readonly namer: ResourceNamer;
  private readonly pciIds: PciIds;
  private readonly socketDir: SocketDir;
  private readonly api: DevicePluginApi;
  private readonly abort = new AbortController();
  private dirWatch: DirWatch | undefined;
  private scanning: Promise<void> | undefined;
  private fingerprint: string | undefined;
  private lastFullScan = 0;
  private rescanAgain = false;
  private loops: Promise<void>[] = [];
  private stopped = false;

  constructor(private readonly deps: DevicePluginManagerDeps) {
    this.namer = compileResourceConfig(deps.resourceConfig);
    this.pciIds = new PciIds({ reader: deps.reader });
    this.socketDir = deps.socketDir ?? nodeSocketDir;
    this.api = deps.api ?? loadDevicePluginApi();
  }

  /** First scan, one server + registration per resource, then the watch/rescan loops. */
  async start(): Promise<void> {
    await this.rescan();
    this.dirWatch = this.socketDir.watch(this.deps.pluginDir, (name) => {
      if (name === undefined || name === KUBELET_SOCKET || name.startsWith('vfio-handoff-')) void this.checkSockets();
    });
    this.loops.push(this.every(this.deps.rescanIntervalMs ?? 500, () => this.poll()));
    this.loops.push(this.every(this.deps.socketCheckIntervalMs ?? 1000, () => this.checkSockets()));
  }

  /** Current advertised devices per resource (for status reports and tests). */
  deviceSets(): DeviceSets {
    return this.sets;
  }

  plugin(resource: string): ResourcePlugin | undefined {
    return this.plugins.get(resource);
  }

  /** Rescans now (coalesced with a scan already running: that one is followed by exactly one more). */
  rescan(): Promise<void> {
    if (this.scanning) {
      this.rescanAgain = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.rescanAgain = false;
          await this.rescanOnce();
        } while (this.rescanAgain && !this.stopped);
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  /**
   * Resource names chosen per GPU address by the cluster (a GpuPassthrough's resourceName, passed down by
   * the agent); they win over the static configuration and pci.ids. A change renames at the next scan.
   */
  setAddressOverrides(overrides: ReadonlyMap<string, string>): void {
    const changed = new Set([...this.addressOverrides.keys(), ...overrides.keys()].filter((a) => this.addressOverrides.get(a) !== overrides.get(a)));
    if (changed.size === 0) return;
    this.addressOverrides = new Map(overrides);
    for (const a of changed) this.names.delete(a);
  }

  /**
   * GPUs to advertise Unhealthy because the agent is giving them back to the host: kubelet stops
   * allocating them before the PodResources re-check and the unbind. Resolves once the change has been
   * pushed on the ListAndWatch streams (a rescan); GPUs left out of a later set are offered again.
   */
  async setWithdrawn(addresses: ReadonlySet<string>, rescan = true): Promise<void> {
    if (addresses.size === this.withdrawn.size && [...addresses].every((a) => this.withdrawn.has(a))) return;
    this.withdrawn = new Set(addresses);
    if (rescan) await this.rescan();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.dirWatch?.close();
    await Promise.allSettled(this.loops);
    await this.scanning?.catch(() => undefined);
    await Promise.all([...this.plugins.values()].map((p) => p.stop()));
    this.plugins.clear();
  }

  /** The periodic tick: a full scan only when the host fingerprint moved (or the full interval passed). */
  private async poll(): Promise<void> {
    const snapshot = this.snapshot;
    const due = this.deps.clock.now() - this.lastFullScan >= (this.deps.fullRescanIntervalMs ?? 30_000);
    if (snapshot && !due && this.fingerprint !== undefined) {
      const now = await hostFingerprint(this.deps.reader, snapshot).catch(() => undefined);
      if (now === this.fingerprint) return;
    }
    await this.rescan();
  }

  private async rescanOnce(): Promise<void> {
    if (this.stopped) return;
    this.lastFullScan = this.deps.clock.now();
    // Fingerprints on both sides of the scan: only when they agree do we know the snapshot matches the
    // fingerprint we will compare against; otherwise (a change raced the scan, or the set of watched
    // functions moved) the next poll scans again.
    const fingerprintOf = (s: HostSnapshot): Promise<string | undefined> => hostFingerprint(this.deps.reader, s).catch(() => undefined);
    const before = this.snapshot ? await fingerprintOf(this.snapshot) : undefined;
    const snapshot = await this.deps.scan();
    const after = await fingerprintOf(snapshot);
    this.fingerprint = before !== undefined && before === after ? after : undefined;
    await this.nameGpus(snapshot.gpus);
    let next = computeDeviceSets(snapshot, (g) => this.names.get(g.fn.address), this.sets, this.withdrawn);
    const clashes = envVarClashes(next.keys(), new Set(this.sets.keys()));
    if (clashes.size > 0) {
      next = new Map([...next].filter(([resource]) => !clashes.has(resource)));
      const key = JSON.stringify([...clashes].sort());
      if (key !== this.reportedClashes) {
        for (const [dropped, kept] of clashes) {
          this.deps.logger.error({ resource: dropped, clashesWith: kept, env: pciResourceEnvVar(kept) }, 'not serving a resource whose PCI_RESOURCE_* variable another resource on this node already uses');
        }
      }
      this.reportedClashes = key;
    } else {
      this.reportedClashes = undefined;
    }
    const diff = diffDeviceSets(this.sets, next);
    // The spec first: a device kubelet learns about must already resolve in the runtime. A failed write is
    // logged and retried at the next scan (Allocate syncs again and fails if it still cannot write).
    await this.deps.cdi?.sync(snapshot).catch((err: Error) => this.deps.logger.error({ err: err.message }, 'cannot write the CDI spec'));
    this.snapshot = snapshot;
    const previous = this.sets;
    this.sets = next;
    for (const resource of [...diff.added, ...diff.changed]) this.report(resource, next.get(resource) ?? []);
    for (const resource of diff.changed) this.plugins.get(resource)?.update(next.get(resource)!.map(toWireDevice));
    for (const resource of diff.removed) {
      const plugin = this.plugins.get(resource);
      this.plugins.delete(resource);
      this.report(resource, []);
      if (plugin) {
        // Tell kubelet the devices are gone before the stream closes, so capacity drops now rather
        // than after its 5-minute grace period.
        plugin.update([]);
        await plugin.stop();
      }
      this.deps.logger.info({ resource, had: previous.get(resource)?.length ?? 0 }, 'resource vanished; plugin stopped');
    }
    const started = await Promise.allSettled(diff.added.map((resource) => this.startPlugin(resource)));
    const failed = diff.added.filter((_, i) => started[i]!.status === 'rejected');
    if (failed.length > 0) {
      // Forget them so the next scan tries again (a conflicting instance may have gone away).
      const kept = new Map(this.sets);
      for (const r of failed) kept.delete(r);
      this.sets = kept;
      throw (started.find((r): r is PromiseRejectedResult => r.status === 'rejected')!).reason;
    }
  }

  private async startPlugin(resource: string): Promise<void> {
    const plugin = new ResourcePlugin({
      resource,
      pluginDir: this.deps.pluginDir,
      socketFile: socketFileName(resource, this.deps.pluginDir),
      api: this.api,
      socketDir: this.socketDir,
      clock: this.deps.clock,
      logger: this.deps.logger.child({ resource }),
      recorder: this.deps.recorder,
      backoff: this.deps.backoff,
      registerTimeoutMs: this.deps.registerTimeoutMs,
      handlers: {
        devices: () => (this.sets.get(resource) ?? []).map(toWireDevice),
        allocate: (req) => this.allocate(resource, req),
        preferred: (req) => this.preferred(resource, req),
      },
    });
    this.plugins.set(resource, plugin);
    try {
      await plugin.start();
    } catch (err) {
      this.plugins.delete(resource);
      if (err instanceof ConflictError) this.deps.logger.error({ resource, err: err.message }, 'refusing to start');
      throw err;
    }
  }

  private async allocate(resource: string, req: AllocateRequest): Promise<AllocateResponse> {
    try {
      const snapshot = this.snapshot;
      if (!snapshot) throw new ConflictError('no host snapshot yet');
      const advertised: readonly PluginDevice[] = this.sets.get(resource) ?? [];
      checkAllocateRequest(resource, advertised, req.container_requests);
      const ids = req.container_requests.flatMap((c) => c.devices_ids);
      // Fresh host state for exactly the requested devices, read now (kubelet keeps the answer forever).
      const fresh = await revalidateDevices(this.deps.reader, snapshot, ids);
      if ([...fresh.values()].some((r) => r !== undefined)) void this.rescan().catch(() => undefined);
      const cdi = this.deps.cdi !== undefined;
      const response: AllocateResponse = {
        container_responses: req.container_requests.map((c) => buildContainerAllocateResponse(snapshot, resource, advertised, c.devices_ids, fresh, { cdi })),
      };
      // The runtime resolves the CDI IDs when it creates the container, right after this answer: make sure
      // the spec names them now (a no-op when the file is current), or fail the Allocate.
      if (cdi) await this.deps.cdi!.sync(snapshot);
      this.deps.recorder.allocate(resource, true);
      return response;
    } catch (err) {
      this.deps.recorder.allocate(resource, false);
      throw err;
    }
  }

  /**
   * Only advertised devices are ever returned: available IDs we do not advertise are ignored, and a
   * must-include ID we do not advertise (or that is not in the available list) is refused.
   */
  private preferred(resource: string, req: PreferredAllocationRequest): PreferredAllocationResponse {
    const advertised = this.sets.get(resource) ?? [];
    const numa = new Map(advertised.map((d) => [d.id as string, d.numaNode]));
    return {
      container_responses: req.container_requests.map((c) => {
        const available = c.available_deviceIDs.filter((id) => numa.has(id));
        const availableSet = new Set(available);
        const stranger = c.must_include_deviceIDs.find((id) => !availableSet.has(id));
        if (stranger !== undefined) {
          throw new InvalidArgumentError(`preferred allocation for ${resource}: must-include device ${JSON.stringify(stranger.slice(0, 64))} is not an available device this plugin advertises`);
        }
        if (c.allocation_size > available.length) {
          throw new InvalidArgumentError(`preferred allocation for ${resource}: ${c.allocation_size} devices asked for, ${available.length} available`);
        }
        return {
          deviceIDs: preferredAllocation({ available, mustInclude: c.must_include_deviceIDs, size: c.allocation_size }, (id) => numa.get(id)),
        };
      }),
    };
  }

  private async nameGpus(gpus: readonly Gpu[]): Promise<void> {
    for (const gpu of gpus) {
      if (this.names.has(gpu.fn.address)) continue;
      const name =
        this.addressOverrides.get(gpu.fn.address) ??
        overrideFor(this.namer, gpu.fn) ??
        defaultResourceName(gpu.fn, await this.pciIds.deviceName(gpu.fn.vendorId, gpu.fn.deviceId));
      this.names.set(gpu.fn.address, name);
    }
  }

  private report(resource: string, devices: readonly PluginDevice[]): void {
    const healthy = devices.filter((d) => d.health === 'Healthy').length;
    this.deps.recorder.devices(resource, healthy, devices.length - healthy);
  }

  private async checkSockets(): Promise<void> {
    await Promise.all([...this.plugins.values()].map((p) => p.check().catch(() => undefined)));
  }

  private async every(ms: number, fn: () => Promise<void>): Promise<void> {
    while (!this.stopped) {
      try {
        await this.deps.clock.sleep(ms, this.abort.signal);
      } catch {
        return;
      }
      try {
        await fn();
      } catch (err) {
        this.deps.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'device plugin background task failed');
      }
    }
  }
}

export interface StartDevicePluginsDeps extends DevicePluginManagerDeps {
  readonly resourceConfig: ResourceConfig;
  readonly rescanIntervalMs: number;
}

export interface RunningDevicePlugins {
  /** Stops serving cleanly (sockets closed, streams ended). Never touches GPU bindings. */
  stop(): Promise<void>;
  /** Rescans the host now (e.g. right after the engine prepared a GPU). */
  rescan(): Promise<void>;
  /** resource → advertised devices (id, health, group, NUMA). */
  deviceSets(): DeviceSets;
  readonly manager: DevicePluginManager;
}

/**
 * Composition helper for the CLI (`plugin` and `agent`): builds the manager over the real socket
 * directory and starts it. Rejects with `ConflictError` when another live instance owns a socket.
 */
export async function startDevicePlugins(deps: StartDevicePluginsDeps): Promise<RunningDevicePlugins> {
  const manager = new DevicePluginManager(deps);
  try {
    await manager.start();
  } catch (err) {
    await manager.stop();
    throw err;
  }
  return { stop: () => manager.stop(), rescan: () => manager.rescan(), deviceSets: () => manager.deviceSets(), manager };
}

/** The default plugin directory kubelet serves `kubelet.sock` in. */
export const DEFAULT_PLUGIN_DIR = '/var/lib/kubelet/device-plugins';
