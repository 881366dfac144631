import * as grpc from '@grpc/grpc-js';
import { shutdownGrpcServer } from '../core/grpc-shutdown.js';
import { HandoffError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type {
  AllocateRequest,
  AllocateResponse,
  Device,
  DevicePluginApi,
  DevicePluginOptions,
  Empty,
  ListAndWatchResponse,
  PreferredAllocationRequest,
  PreferredAllocationResponse,
  RegisterRequest,
} from './api.js';
import { unixTarget } from './api.js';

/** What the server asks of its owner; everything here is per resource. */
export interface PluginHandlers {
  devices(): readonly Device[];
  allocate(req: AllocateRequest): Promise<AllocateResponse>;
  preferred(req: PreferredAllocationRequest): Promise<PreferredAllocationResponse> | PreferredAllocationResponse;
  /** A ListAndWatch stream ended without us ending it (kubelet went away or dropped us). */
  streamBroken(): void;
}

/**
 * Largest request the plugin decodes. kubelet's requests name a node's devices a few times over (an ID
 * is ~14 bytes on the wire: 1,000 devices ≈ 14 KiB); a bigger one is refused with RESOURCE_EXHAUSTED
 * by grpc-js before it is decoded, so a hostile client cannot make us allocate for it.
 */
export const MAX_REQUEST_BYTES = 64 * 1024;

export const PLUGIN_OPTIONS: DevicePluginOptions = { pre_start_required: false, get_preferred_allocation_available: true };

/** Maps our typed errors to gRPC status codes kubelet logs verbatim. */
export function grpcStatusOf(err: unknown): grpc.status {
  if (err instanceof HandoffError) {
    switch (err.code) {
      case 'INVALID_ARGUMENT':
      case 'NOT_FOUND':
        return grpc.status.INVALID_ARGUMENT;
      case 'BLOCKED':
      case 'IN_USE':
        return grpc.status.FAILED_PRECONDITION;
      case 'TIMEOUT':
        return grpc.status.DEADLINE_EXCEEDED;
      default:
        return grpc.status.INTERNAL;
    }
  }
  return grpc.status.INTERNAL;
}

function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  return { code: grpcStatusOf(err), details: err instanceof Error ? err.message : String(err) };
}

/**
 * One grpc-js server for one resource on one unix socket. ListAndWatch always sends the full list
 * (kubelet replaces its set with each message), first on connect and then on every `update()`.
 */
export class GrpcPluginServer {
  private server: grpc.Server | undefined;
  private readonly streams = new Map<grpc.ServerWritableStream<Empty, ListAndWatchResponse>, number>();
  private stopping = false;
  private generation = 0;
  /** The stream kubelet opened for the current registration (the first one after Register). */
  private kubeletStream: grpc.ServerWritableStream<Empty, ListAndWatchResponse> | undefined;
  private kubeletGeneration = -1;

  constructor(
    private readonly deps: {
      readonly api: DevicePluginApi;
      readonly socketPath: string;
      readonly handlers: PluginHandlers;
      readonly logger: Logger;
    },
  ) {}

  get streamCount(): number {
    return this.streams.size;
  }

  async start(): Promise<void> {
    const { api, handlers, logger } = this.deps;
    this.stopping = false;
    const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_REQUEST_BYTES });
    server.addService(api.devicePluginService, {
      GetDevicePluginOptions: (_call: grpc.ServerUnaryCall<Empty, DevicePluginOptions>, cb: grpc.sendUnaryData<DevicePluginOptions>) =>
        cb(null, PLUGIN_OPTIONS),
      ListAndWatch: (call: grpc.ServerWritableStream<Empty, ListAndWatchResponse>) => {
        const generation = this.generation;
        // kubelet opens its stream right after each Register (it dials back inside the call); any
        // later stream of the same registration is some other client (a debugging tool, a hostile
        // process with access to the socket), served but never a reason to re-register.
        const kubelets = this.kubeletStream === undefined || this.kubeletGeneration !== generation;
        if (kubelets) {
          this.kubeletStream = call;
          this.kubeletGeneration = generation;
        }
        this.streams.set(call, generation);
        const gone = (): void => {
          if (!this.streams.delete(call)) return;
          // Only kubelet's stream of the latest registration matters: kubelet may drop the stream of an
          // earlier registration when we register again, and reacting to that would loop.
          const current = generation === this.generation && this.kubeletStream === call;
          if (this.kubeletStream === call) this.kubeletStream = undefined;
          if (!this.stopping && current) handlers.streamBroken();
        };
        call.on('cancelled', gone);
        call.on('close', gone);
        call.on('error', gone);
        call.write({ devices: [...handlers.devices()] });
      },
      GetPreferredAllocation: (
        call: grpc.ServerUnaryCall<PreferredAllocationRequest, PreferredAllocationResponse>,
        cb: grpc.sendUnaryData<PreferredAllocationResponse>,
      ) => {
        Promise.resolve()
          .then(() => handlers.preferred(call.request))
          .then((r) => cb(null, r), (err: unknown) => cb(toServiceError(err)));
      },
      Allocate: (call: grpc.ServerUnaryCall<AllocateRequest, AllocateResponse>, cb: grpc.sendUnaryData<AllocateResponse>) => {
        handlers.allocate(call.request).then(
          (r) => cb(null, r),
          (err: unknown) => {
            logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'Allocate refused');
            cb(toServiceError(err));
          },
        );
      },
      // pre_start_required is false, so kubelet never calls this; answer anyway for old/odd callers.
      PreStartContainer: (_call: grpc.ServerUnaryCall<unknown, object>, cb: grpc.sendUnaryData<object>) => cb(null, {}),
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(unixTarget(this.deps.socketPath), grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.server = server;
  }

  /** Called right before each Register: streams opened from now on belong to the new registration. */
  beginRegistration(): void {
    this.generation++;
  }

  /** Pushes the full list to every open ListAndWatch stream. */
  update(devices: readonly Device[]): void {
    for (const s of this.streams.keys()) s.write({ devices: [...devices] });
  }

  /** Ends the streams and closes the socket; waits at most `graceMs` for in-flight calls. */
  async stop(graceMs = 1000): Promise<void> {
    this.stopping = true;
    const server = this.server;
    this.server = undefined;
    for (const s of this.streams.keys()) s.end();
    this.streams.clear();
    if (!server) return;
    await shutdownGrpcServer(server, graceMs);
  }
}

function unary<Req, Res>(
  client: grpc.Client,
  method: (req: Req, opts: grpc.CallOptions, cb: grpc.requestCallback<Res>) => grpc.ClientUnaryCall,
  req: Req,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const call = method.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => {
      signal?.removeEventListener('abort', cancel);
      if (err) reject(err);
      else resolve(res as Res);
    });
    function cancel(): void {
      call.cancel();
    }
    if (signal?.aborted) call.cancel();
    else signal?.addEventListener('abort', cancel, { once: true });
  });
}

/** Calls GetDevicePluginOptions on a plugin socket: the self-check before registering. */
export async function probePlugin(api: DevicePluginApi, socketPath: string, timeoutMs: number): Promise<DevicePluginOptions> {
  const client = new api.DevicePluginClient(unixTarget(socketPath), grpc.credentials.createInsecure());
  try {
    return await unary(client, client.GetDevicePluginOptions, {}, timeoutMs);
  } finally {
    client.close();
  }
}

/** `v1beta1.Registration/Register` on kubelet.sock. kubelet ≥1.25 dials us back inside this call. */
export async function registerWithKubelet(
  api: DevicePluginApi,
  kubeletSocket: string,
  req: RegisterRequest,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const client = new api.RegistrationClient(unixTarget(kubeletSocket), grpc.credentials.createInsecure());
  try {
    await unary(client, client.Register, req, timeoutMs, signal);
  } finally {
    client.close();
  }
}
