import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import { KubeletError } from '../core/errors.js';

export const POD_RESOURCES_PROTO_PATH = fileURLToPath(new URL('../../proto/podresources/v1/api.proto', import.meta.url));

/** A device held by a container, as kubelet's PodResources API reports it. */
export interface DeviceHolder {
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  readonly resourceName: string;
  readonly deviceId: string;
}

/** Port: which devices running pods hold. The agent never unbinds a GPU that appears here. */
export interface PodResourcesPort {
  list(signal?: AbortSignal): Promise<DeviceHolder[]>;
}

interface ListResponse {
  pod_resources?: { name?: string; namespace?: string; containers?: { name?: string; devices?: { resource_name?: string; device_ids?: string[] }[] }[] }[];
}

export function loadPodResourcesDefinition(): grpc.GrpcObject {
  const def = protoLoader.loadSync(POD_RESOURCES_PROTO_PATH, { keepCase: true, longs: Number, defaults: true, arrays: true });
  return grpc.loadPackageDefinition(def);
}

/**
 * Client for kubelet's PodResources v1 `List` on its unix socket
 * (/var/lib/kubelet/pod-resources/kubelet.sock). Every call has a deadline: a wedged kubelet must not
 * wedge the agent's release decisions — an error here makes the agent treat GPUs as in use.
 */
export class GrpcPodResources implements PodResourcesPort {
  private client: grpc.Client | undefined;

  constructor(private readonly deps: { socketPath: string; timeoutMs?: number }) {}

  async list(signal?: AbortSignal): Promise<DeviceHolder[]> {
    const client = this.connect();
    const res = await new Promise<ListResponse>((resolve, reject) => {
      const call = (client as unknown as { List: (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: ListResponse) => void) => grpc.ClientUnaryCall }).List(
        {},
        { deadline: Date.now() + (this.deps.timeoutMs ?? 5_000) },
        (err, r) => (err ? reject(new KubeletError(`PodResources List failed: ${err.message}`, { cause: err })) : resolve(r)),
      );
      signal?.addEventListener('abort', () => call.cancel(), { once: true });
    });
    const out: DeviceHolder[] = [];
    for (const pod of res.pod_resources ?? []) {
      for (const c of pod.containers ?? []) {
        for (const d of c.devices ?? []) {
          for (const id of d.device_ids ?? []) {
            out.push({ namespace: pod.namespace ?? '', pod: pod.name ?? '', container: c.name ?? '', resourceName: d.resource_name ?? '', deviceId: id });
          }
        }
      }
    }
    return out;
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }

  private connect(): grpc.Client {
    if (!this.client) {
      const pkg = loadPodResourcesDefinition() as unknown as { v1: { PodResourcesLister: grpc.ServiceClientConstructor } };
      this.client = new pkg.v1.PodResourcesLister(`unix://${this.deps.socketPath}`, grpc.credentials.createInsecure());
    }
    return this.client;
  }
}
