import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { loadDevicePluginApi, unixTarget } from '../deviceplugin/api.js';
import type { DevicePluginClient, ListAndWatchResponse, RegisterRequest } from '../deviceplugin/api.js';

/**
 * The kubelet side for the benchmark: a Registration server on `<dir>/kubelet.sock` that, like kubelet
 * ≥1.25, dials the plugin inside Register, calls GetDevicePluginOptions, then holds a ListAndWatch
 * stream and timestamps every message. (Tests use the fuller emulator in test/support/fake-kubelet.ts.)
 */
export class BenchKubelet {
  private server: grpc.Server | undefined;
  private readonly api = loadDevicePluginApi();
  readonly clients = new Map<string, DevicePluginClient>();
  readonly updates = new Map<string, { at: number; msg: ListAndWatchResponse }[]>();
  private readonly listeners = new Set<() => void>();

  constructor(readonly dir: string) {}

  async start(): Promise<void> {
    const server = new grpc.Server();
    server.addService(this.api.registrationService, {
      Register: (call: grpc.ServerUnaryCall<RegisterRequest, object>, cb: grpc.sendUnaryData<object>) => {
        const req = call.request;
        const client = new this.api.DevicePluginClient(unixTarget(join(this.dir, req.endpoint)), grpc.credentials.createInsecure());
        client.GetDevicePluginOptions({}, { deadline: Date.now() + 10_000 }, (err) => {
          if (err) return cb({ code: grpc.status.UNKNOWN, details: `failed to get device plugin options: ${err.message}` });
          this.clients.get(req.resource_name)?.close();
          this.clients.set(req.resource_name, client);
          const list = this.updates.get(req.resource_name) ?? [];
          this.updates.set(req.resource_name, list);
          const stream = client.ListAndWatch({});
          stream.on('data', (msg: ListAndWatchResponse) => {
            list.push({ at: performance.now(), msg });
            for (const l of [...this.listeners]) l();
          });
          stream.on('error', () => undefined);
          cb(null, {});
        });
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(unixTarget(join(this.dir, 'kubelet.sock')), grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
    );
    this.server = server;
  }

  /** Resolves with the arrival time of the first message (after now) that satisfies `pred`. */
  nextUpdate(resource: string, pred: (msg: ListAndWatchResponse) => boolean, timeoutMs = 10_000): Promise<number> {
    const seen = this.updates.get(resource)?.length ?? 0;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`no matching ListAndWatch update for ${resource} within ${timeoutMs} ms`));
      }, timeoutMs);
      const check = (): void => {
        const hit = (this.updates.get(resource) ?? []).slice(seen).find((u) => pred(u.msg));
        if (!hit) return;
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve(hit.at);
      };
      this.listeners.add(check);
      check();
    });
  }

  async waitForResource(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const first = [...this.updates.entries()].find(([, u]) => u.length > 0);
      if (first) return first[0];
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('the plugin never registered');
  }

  async stop(): Promise<void> {
    for (const c of this.clients.values()) c.close();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.tryShutdown(() => r()));
  }
}
