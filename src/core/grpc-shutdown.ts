import type * as grpc from '@grpc/grpc-js';

/**
 * Stops a gRPC server: lets calls in flight finish (`tryShutdown`), and cuts them off after `graceMs` (a stuck
 * ListAndWatch stream or a kubelet that never closes its end would otherwise hold the stop forever).
 */
export function shutdownGrpcServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
