import * as grpc from '@grpc/grpc-js';
import { loadPodResourcesDefinition } from '../../../src/agent/pod-resources.js';

/** kubelet's PodResources server, answering with whatever devices the test says pods hold. */
export async function startPodResources(socket: string, held: () => string[], resourceName = 'example.com/h100'): Promise<grpc.Server> {
  const pkg = loadPodResourcesDefinition() as unknown as { v1: { PodResourcesLister: { service: grpc.ServiceDefinition } } };
  const server = new grpc.Server();
  server.addService(pkg.v1.PodResourcesLister.service, {
    List: (_call: unknown, cb: grpc.sendUnaryData<object>) =>
      cb(null, { pod_resources: [{ name: 'virt-launcher-vm1', namespace: 'vms', containers: [{ name: 'compute', devices: [{ resource_name: resourceName, device_ids: held() }] }] }] }),
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return server;
}

/** Polls `fn` every 100 ms until it returns something other than undefined/false. */
export async function until<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
