import * as grpc from '@grpc/grpc-js';
import { lstat, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { loadDevicePluginApi, unixTarget } from '../deviceplugin/api.js';
import type {
  AllocateResponse,
  ContainerPreferredAllocationRequest,
  Device,
  DevicePluginClient,
  DevicePluginOptions,
  ListAndWatchResponse,
  PreferredAllocationResponse,
  RegisterRequest,
} from '../deviceplugin/api.js';

/**
 * A kubelet emulator for device-plugin tests: a real `v1beta1.Registration` server on `<dir>/kubelet.sock`
 * that behaves as kubelet ≥1.25 does (shared/research/protocol.md §2):
 * - Register validates the version and `IsExtendedResourceName`, joins the endpoint to the directory,
 *   dials it and calls GetDevicePluginOptions *inside* Register, then opens ListAndWatch in the background.
 *   The dial blocks until the plugin's socket answers or 10 s pass, as kubelet's does (devicemanager
 *   plugin/v1beta1/client.go `dial`: `grpc.WithBlock()` under a 10 s context, kubelet v1.34.4): a Register whose
 *   endpoint is gone hangs for those 10 s rather than failing at once;
 * - every ListAndWatch message replaces the resource's device set; a stream that ends marks all devices
 *   unhealthy and is never re-dialled (the plugin must register again);
 * - `restart()` closes everything, removes every socket in the dir and re-creates kubelet.sock.
 */

const SUPPORTED_VERSIONS = ['v1beta1'];
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

function isExtendedResourceName(name: string): boolean {
  if (!name.includes('/') || name.includes('kubernetes.io/') || name.startsWith('requests.')) return false;
  const [prefix, part, ...rest] = name.split('/');
  if (rest.length > 0 || !prefix || !part) return false;
  const full = `requests.${prefix}`;
  return full.length <= 253 && full.split('.').every((l) => DNS_LABEL.test(l)) && part.length <= 63 && NAME_PART.test(part);
}

export interface ResourceView {
  readonly registrations: RegisterRequest[];
  readonly options: DevicePluginOptions[];
  /** Every ListAndWatch message, with the time it arrived (ms, performance.now()). */
  readonly updates: { at: number; devices: Device[] }[];
  endpoint: string;
  devices: Device[];
  connected: boolean;
  client: DevicePluginClient | undefined;
  stream: grpc.ClientReadableStream<ListAndWatchResponse> | undefined;
}

export class FakeKubelet {
  readonly socketPath: string;
  private server: grpc.Server | undefined;
  private readonly api = loadDevicePluginApi();
  private readonly resources = new Map<string, ResourceView>();
  private readonly waiters = new Set<() => void>();
  /** Every Register call, accepted or not, with the error text it got (recorded when kubelet answers it). */
  readonly registerCalls: { request: RegisterRequest; error: string | undefined }[] = [];
  /** Runs once at the start of the next Register (e.g. to wipe the plugin's socket at the worst moment). */
  beforeNextRegister: ((req: RegisterRequest) => Promise<void>) | undefined;
  /** How long Register's dial of the plugin socket blocks before failing (kubelet: 10 s). */
  dialTimeoutMs = 10_000;

  private constructor(readonly dir: string) {
    this.socketPath = join(dir, 'kubelet.sock');
  }

  static async start(dir: string): Promise<FakeKubelet> {
    const k = new FakeKubelet(dir);
    await k.listen();
    return k;
  }

  resource(name: string): ResourceView | undefined {
    return this.resources.get(name);
  }
  resourceNames(): string[] {
    return [...this.resources.keys()].sort();
  }
  healthy(name: string): string[] {
    const r = this.resources.get(name);
    if (!r) return [];
    return r.connected ? r.devices.filter((d) => d.health === 'Healthy').map((d) => d.ID) : [];
  }
  unhealthy(name: string): string[] {
    const r = this.resources.get(name);
    if (!r) return [];
    return r.connected ? r.devices.filter((d) => d.health !== 'Healthy').map((d) => d.ID) : r.devices.map((d) => d.ID);
  }

  /** Resolves once `pred()` holds (re-checked on every kubelet-side event and every 20 ms). */
  async waitFor(pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`FakeKubelet: timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, 20);
        function done(): void {
          clearTimeout(t);
          waiters.delete(done);
          resolve();
        }
        const waiters = this.waiters;
        waiters.add(done);
      });
    }
  }

  async allocate(resource: string, containers: readonly (readonly string[])[]): Promise<AllocateResponse> {
    const client = this.clientFor(resource);
    return new Promise((resolve, reject) =>
      client.Allocate({ container_requests: containers.map((ids) => ({ devices_ids: [...ids] })) }, {}, (err, res) =>
        err ? reject(err) : resolve(res!),
      ),
    );
  }

  async preferred(resource: string, req: ContainerPreferredAllocationRequest): Promise<PreferredAllocationResponse> {
    const client = this.clientFor(resource);
    return new Promise((resolve, reject) =>
      client.GetPreferredAllocation({ container_requests: [req] }, {}, (err, res) => (err ? reject(err) : resolve(res!))),
    );
  }

  async preStart(resource: string, ids: readonly string[]): Promise<object> {
    const client = this.clientFor(resource);
    return new Promise((resolve, reject) => client.PreStartContainer({ devices_ids: [...ids] }, {}, (err, res) => (err ? reject(err) : resolve(res!))));
  }

  /** Drops the ListAndWatch stream of one resource as a kubelet-side error would (no re-dial). */
  breakStream(resource: string): void {
    const r = this.resources.get(resource);
    r?.stream?.cancel();
  }

  /** A kubelet restart: close, remove every socket in the dir, re-create kubelet.sock. */
  async restart(): Promise<void> {
    await this.close();
    for (const name of await readdir(this.dir)) {
      const p = join(this.dir, name);
      const s = await lstat(p).catch(() => undefined);
      if (s?.isSocket()) await unlink(p).catch(() => undefined);
    }
    await this.listen();
  }

  async close(): Promise<void> {
    for (const r of this.resources.values()) this.disconnect(r);
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    this.notify();
  }

  private clientFor(resource: string): DevicePluginClient {
    const r = this.resources.get(resource);
    if (!r?.client || !r.connected) throw new Error(`FakeKubelet: resource ${resource} is not connected`);
    return r.client;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  private disconnect(r: ResourceView): void {
    r.connected = false;
    r.stream?.cancel();
    r.stream = undefined;
    r.client?.close();
    r.client = undefined;
  }

  private async listen(): Promise<void> {
    const server = new grpc.Server();
    server.addService(this.api.registrationService, {
      Register: (call: grpc.ServerUnaryCall<RegisterRequest, object>, cb: grpc.sendUnaryData<object>) => {
        this.register(call.request).then(
          () => {
            this.registerCalls.push({ request: call.request, error: undefined });
            cb(null, {});
          },
          (err: unknown) => {
            const details = err instanceof Error ? err.message : String(err);
            this.registerCalls.push({ request: call.request, error: details });
            cb({ code: grpc.status.UNKNOWN, details });
          },
        );
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(unixTarget(this.socketPath), grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.server = server;
  }

  private async register(req: RegisterRequest): Promise<void> {
    if (!SUPPORTED_VERSIONS.includes(req.version)) {
      throw new Error(`requested API version ${JSON.stringify(req.version)} is not supported by kubelet. Supported version is "v1beta1"`);
    }
    if (!isExtendedResourceName(req.resource_name)) throw new Error(`the ResourceName ${JSON.stringify(req.resource_name)} is invalid`);
    const hook = this.beforeNextRegister;
    this.beforeNextRegister = undefined;
    await hook?.(req);
    // A fresh connection per dial, as Go's grpc.DialContext makes: grpc-js would otherwise reuse a pooled
    // connection to a socket file that is already unlinked.
    const client = new this.api.DevicePluginClient(unixTarget(join(this.dir, req.endpoint)), grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
    });
    await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + this.dialTimeoutMs, (err) => (err ? reject(err) : resolve()))).catch(
      (err: unknown) => {
        client.close();
        throw new Error(`failed to dial device plugin: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
    const options = await new Promise<DevicePluginOptions>((resolve, reject) =>
      client.GetDevicePluginOptions({}, { deadline: Date.now() + 2000 }, (err, res) => (err ? reject(err) : resolve(res!))),
    ).catch((err: unknown) => {
      client.close();
      throw new Error(`failed to get device plugin options: ${err instanceof Error ? err.message : String(err)}`);
    });
    let r = this.resources.get(req.resource_name);
    if (!r) {
      r = { registrations: [], options: [], updates: [], endpoint: req.endpoint, devices: [], connected: false, client: undefined, stream: undefined };
      this.resources.set(req.resource_name, r);
    }
    // The newest registration replaces the old endpoint (manager.go PluginConnected).
    if (r.client) this.disconnect(r);
    r.registrations.push(req);
    r.options.push(options);
    r.endpoint = req.endpoint;
    r.client = client;
    r.connected = true;
    const view = r;
    const stream = client.ListAndWatch({});
    view.stream = stream;
    stream.on('data', (msg: ListAndWatchResponse) => {
      view.devices = msg.devices;
      view.updates.push({ at: performance.now(), devices: msg.devices });
      this.notify();
    });
    const ended = (): void => {
      if (view.stream !== stream) return;
      view.connected = false; // markResourceUnhealthy; kubelet never re-dials
      view.stream = undefined;
      this.notify();
    };
    stream.on('error', ended);
    stream.on('end', ended);
    this.notify();
  }
}
