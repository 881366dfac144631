import { basename, join } from 'node:path';
import type { Clock } from '../core/clock.js';
import { ConflictError, KubeletError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { PluginRecorder } from '../metrics/recorders.js';
import { backoffDelay, type Backoff } from '../core/backoff.js';
import { API_VERSION, KUBELET_SOCKET } from './api.js';
import type { Device, DevicePluginApi } from './api.js';
import { GrpcPluginServer, PLUGIN_OPTIONS, probePlugin, registerWithKubelet } from './grpc-plugin-server.js';
import type { PluginHandlers } from './grpc-plugin-server.js';
import { assertSocketPathFits } from './resources.js';
import type { SocketDir } from './socket-dir.js';

export type PluginPhase = 'idle' | 'serving' | 'registered' | 'restarting' | 'stopped';
export type ReregisterTrigger = 'kubelet_restart' | 'socket_removed' | 'stream_broken' | 'retry';

export const DEFAULT_BACKOFF: Backoff = { initialMs: 250, maxMs: 30_000 };

export interface ResourcePluginDeps {
  readonly resource: string;
  readonly pluginDir: string;
  readonly socketFile: string; // bare file name inside pluginDir: what kubelet gets as `endpoint`
  readonly api: DevicePluginApi;
  readonly socketDir: SocketDir;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly recorder: Pick<PluginRecorder, 'registered' | 'reregistered'>;
  readonly handlers: Omit<PluginHandlers, 'streamBroken'>;
  readonly backoff?: Backoff;
  readonly random?: () => number;
  /** Deadline of our Register call; kubelet dials back and calls GetDevicePluginOptions inside it. */
  readonly registerTimeoutMs?: number;
}

/**
 * The life of one resource's plugin, as an explicit state machine:
 * `idle → serving → registered ⇄ restarting → stopped`. Serve first (refusing a socket another live
 * instance answers on), self-check over the socket, then Register. Re-registration is requested by
 * events (`kick`) — kubelet restart, own socket removed, ListAndWatch broken — and runs in one worker
 * at a time, so a burst of events (a kubelet restart produces all three) becomes one re-registration.
 */
export class ResourcePlugin {
  private phaseValue: PluginPhase = 'idle';
  private server: GrpcPluginServer | undefined;
  private registeredKubelet: string | undefined; // identity (inode/ctime) of the kubelet.sock we registered with
  private pending: ReregisterTrigger | undefined;
  private worker: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private registering: AbortController | undefined; // the Register call in flight, if any

  constructor(private readonly deps: ResourcePluginDeps) {}

  get phase(): PluginPhase {
    return this.phaseValue;
  }
  get socketPath(): string {
    return join(this.deps.pluginDir, this.deps.socketFile);
  }
  private get kubeletSocket(): string {
    return join(this.deps.pluginDir, KUBELET_SOCKET);
  }

  /**
   * Serves and makes the first registration attempt. Throws `ConflictError` when another live instance
   * owns the socket. A failed Register does not throw: it is retried in the background with backoff.
   */
  async start(): Promise<void> {
    assertSocketPathFits(this.socketPath);
    assertSocketPathFits(this.kubeletSocket);
    await this.serve();
    await this.registerOnce('retry', false).catch(() => this.kick('retry'));
  }

  /** Requests a re-registration (coalesced; the worker re-serves first when the socket is gone). */
  kick(trigger: ReregisterTrigger): void {
    if (this.phaseValue === 'stopped') return;
    this.pending ??= trigger;
    this.worker ??= this.work().finally(() => {
      this.worker = undefined;
    });
  }

  /** Cheap check called on directory events and by the periodic stat fallback. */
  async check(): Promise<void> {
    if (this.phaseValue === 'stopped' || this.phaseValue === 'idle') return;
    const own = await this.deps.socketDir.stat(this.socketPath);
    if (!own?.isSocket) {
      // A Register in flight now makes kubelet dial a socket that is gone: real kubelet keeps dialing until its
      // own timeout (10 s), so cancel it and let the worker serve again at once.
      this.registering?.abort();
      return this.kick('socket_removed');
    }
    if (this.phaseValue === 'registered' && this.registeredKubelet !== undefined) {
      const kubelet = await this.deps.socketDir.stat(this.kubeletSocket);
      if (kubelet && identity(kubelet) !== this.registeredKubelet) this.kick('kubelet_restart');
    }
  }

  update(devices: readonly Device[]): void {
    this.server?.update(devices);
  }

  get streamCount(): number {
    return this.server?.streamCount ?? 0;
  }

  /** Stops serving. Never touches GPU bindings: a rolling update must not pull GPUs from running VMs. */
  async stop(): Promise<void> {
    this.phaseValue = 'stopped';
    this.abort.abort(new KubeletError(`plugin for ${this.deps.resource} stopped`));
    await this.worker?.catch(() => undefined);
    await this.server?.stop();
    this.server = undefined;
  }

  private async serve(): Promise<void> {
    const { socketDir, logger } = this.deps;
    const existing = await socketDir.stat(this.socketPath);
    if (existing) {
      if (existing.isSocket && (await socketDir.isLive(this.socketPath, 1000))) {
        throw new ConflictError(`socket ${this.socketPath} is served by another live instance; refusing to start over it`);
      }
      logger.info({ socket: this.socketPath }, 'removing stale plugin socket');
      await socketDir.remove(this.socketPath);
    }
    const server = new GrpcPluginServer({
      api: this.deps.api,
      socketPath: this.socketPath,
      logger,
      handlers: { ...this.deps.handlers, streamBroken: () => this.kick('stream_broken') },
    });
    await server.start();
    this.server = server;
    // Self-check over the real socket: kubelet ≥1.25 calls us back inside Register.
    await probePlugin(this.deps.api, this.socketPath, 5000);
    this.phaseValue = 'serving';
  }

  private async registerOnce(trigger: ReregisterTrigger, again: boolean): Promise<void> {
    const { api, resource, recorder, logger } = this.deps;
    const kubelet = await this.deps.socketDir.stat(this.kubeletSocket);
    try {
      if (!kubelet) throw new KubeletError(`kubelet socket ${this.kubeletSocket} does not exist`);
      this.server?.beginRegistration();
      this.registering = new AbortController();
      await registerWithKubelet(
        api,
        this.kubeletSocket,
        { version: API_VERSION, endpoint: basename(this.socketPath), resource_name: resource, options: PLUGIN_OPTIONS },
        this.deps.registerTimeoutMs ?? 10_000,
        this.registering.signal,
      );
    } catch (err) {
      recorder.registered(resource, false);
      logger.warn({ resource, err: err instanceof Error ? err.message : String(err) }, 'registration with kubelet failed');
      throw err;
    } finally {
      this.registering = undefined;
    }
    this.registeredKubelet = identity(kubelet);
    this.phaseValue = 'registered';
    recorder.registered(resource, true);
    if (again) recorder.reregistered(resource, trigger);
    logger.info({ resource, endpoint: basename(this.socketPath), trigger: again ? trigger : undefined }, 'registered with kubelet');
  }

  private async work(): Promise<void> {
    let attempt = 0;
    while (this.pending !== undefined && this.phaseValue !== 'stopped') {
      const trigger = this.pending;
      this.pending = undefined;
      try {
        this.phaseValue = 'restarting';
        const own = await this.deps.socketDir.stat(this.socketPath);
        if (!own?.isSocket) {
          // kubelet wiped the directory: our listener is on an unlinked inode nobody can reach.
          await this.server?.stop(0);
          this.server = undefined;
          await this.serve();
        }
        await this.registerOnce(trigger, true);
        attempt = 0;
      } catch (err) {
        if ((this.phaseValue as PluginPhase) === 'stopped') return;
        if (err instanceof ConflictError) {
          this.deps.logger.error({ resource: this.deps.resource, err: err.message }, 'another instance took over the socket');
        }
        this.pending ??= trigger;
        const delay = backoffDelay(attempt++, this.deps.backoff ?? DEFAULT_BACKOFF, this.deps.random);
        try {
          await this.deps.clock.sleep(delay, this.abort.signal);
        } catch {
          return;
        }
      }
    }
  }
}

function identity(s: { ino: number; ctimeMs: number }): string {
  return `${s.ino}:${s.ctimeMs}`;
}
