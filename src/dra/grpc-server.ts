import * as grpc from '@grpc/grpc-js';
import { shutdownGrpcServer } from '../core/grpc-shutdown.js';
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../core/logger.js';
import { unixTarget } from '../deviceplugin/api.js';
import { assertSocketPathFits } from '../deviceplugin/resources.js';
import {
  DRA_PLUGIN_TYPE,
  DRA_SERVICES,
  type DraApi,
  type NodePrepareResourcesRequest,
  type NodePrepareResourcesResponse,
  type NodeUnprepareResourcesRequest,
  type NodeUnprepareResourcesResponse,
  type PluginInfo,
  type RegistrationStatus,
} from './api.js';
import type { DraDriver } from './driver.js';
import { DRIVER_NAME } from './slice.js';

/** Defaults (DRA.md): the registration socket kubelet's plugin watcher finds, and the DRA service socket. */
export const DEFAULT_REGISTRY_DIR = '/var/lib/kubelet/plugins_registry';
export const DEFAULT_DRA_PLUGIN_DIR = `/var/lib/kubelet/plugins/${DRIVER_NAME}`;
export const REGISTRATION_SOCKET = `${DRIVER_NAME}-reg.sock`;
export const DRA_SOCKET = 'dra.sock';

/** Largest request decoded: a NodePrepareResources names claims (~100 bytes each); kubelet batches a pod's claims. */
export const MAX_DRA_REQUEST_BYTES = 256 * 1024;

export interface DraPluginServerDeps {
  readonly api: DraApi;
  readonly driver: Pick<DraDriver, 'prepare' | 'unprepare'>;
  /** `<registry dir>/gpu.handoff.dev-reg.sock`. */
  readonly registrationSocket: string;
  /** `<plugin dir>/dra.sock`, given to kubelet as the endpoint. */
  readonly draSocket: string;
  readonly logger: Logger;
  /** kubelet's NotifyRegistrationStatus. */
  readonly onRegistration?: (status: RegistrationStatus) => void;
}

/**
 * kubelet's view of the DRA driver: the plugin-registration service on one socket (GetInfo answers type
 * `DRAPlugin`, name `gpu.handoff.dev`, the DRA socket, and both DRA service versions) and the DRA service,
 * v1 and v1beta1 (same messages, so one handler serves both), on another. The DRA socket is served before
 * the registration socket appears, so kubelet never dials an endpoint that is not there yet.
 */
export class DraPluginServer {
  private draServer: grpc.Server | undefined;
  private regServer: grpc.Server | undefined;

  constructor(private readonly deps: DraPluginServerDeps) {}

  async start(): Promise<void> {
    const { api, driver, logger } = this.deps;
    assertSocketPathFits(this.deps.draSocket);
    assertSocketPathFits(this.deps.registrationSocket);
    const dra = new grpc.Server({ 'grpc.max_receive_message_length': MAX_DRA_REQUEST_BYTES });
    const handlers = {
      NodePrepareResources: (call: grpc.ServerUnaryCall<NodePrepareResourcesRequest, NodePrepareResourcesResponse>, cb: grpc.sendUnaryData<NodePrepareResourcesResponse>) => {
        driver.prepare(call.request.claims).then(
          (claims) => cb(null, { claims }),
          (err: unknown) => cb({ code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err) }),
        );
      },
      NodeUnprepareResources: (
        call: grpc.ServerUnaryCall<NodeUnprepareResourcesRequest, NodeUnprepareResourcesResponse>,
        cb: grpc.sendUnaryData<NodeUnprepareResourcesResponse>,
      ) => {
        driver.unprepare(call.request.claims).then(
          (claims) => cb(null, { claims }),
          (err: unknown) => cb({ code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err) }),
        );
      },
    };
    dra.addService(api.draV1Service, handlers);
    dra.addService(api.draV1beta1Service, handlers);
    await bind(dra, this.deps.draSocket);
    this.draServer = dra;

    const reg = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 });
    reg.addService(api.registrationService, {
      GetInfo: (_call: grpc.ServerUnaryCall<object, PluginInfo>, cb: grpc.sendUnaryData<PluginInfo>) =>
        cb(null, { type: DRA_PLUGIN_TYPE, name: DRIVER_NAME, endpoint: this.deps.draSocket, supported_versions: [...DRA_SERVICES] }),
      NotifyRegistrationStatus: (call: grpc.ServerUnaryCall<RegistrationStatus, object>, cb: grpc.sendUnaryData<object>) => {
        const s = call.request;
        if (s.plugin_registered) logger.info({ driver: DRIVER_NAME }, 'registered with kubelet');
        else logger.error({ driver: DRIVER_NAME, error: s.error }, 'kubelet refused the registration');
        this.deps.onRegistration?.(s);
        cb(null, {});
      },
    });
    await bind(reg, this.deps.registrationSocket);
    this.regServer = reg;
  }

  /** Removes the registration socket first (kubelet deregisters the driver), then stops serving. */
  async stop(graceMs = 1000): Promise<void> {
    const servers = [this.regServer, this.draServer];
    this.regServer = this.draServer = undefined;
    await rm(this.deps.registrationSocket, { force: true });
    for (const s of servers) if (s) await shutdownGrpcServer(s, graceMs);
    await rm(this.deps.draSocket, { force: true });
  }
}

async function bind(server: grpc.Server, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await rm(path, { force: true }); // a stale socket of an earlier run
  await new Promise<void>((resolve, reject) => server.bindAsync(unixTarget(path), grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
}

