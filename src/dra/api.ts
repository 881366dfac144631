import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

/**
 * The kubelet DRA plugin API (dra v1 and v1beta1) and plugin registration (pluginregistration v1), loaded
 * at runtime from `proto/` like the device-plugin API (src/deviceplugin/api.ts). `keepCase` keeps wire
 * names (`request_names`, `cdi_device_ids`, `supported_versions`) as JS property names.
 *
 * Sources: kubernetes/kubernetes staging/src/k8s.io/kubelet/pkg/apis/{dra/v1,dra/v1beta1,pluginregistration/v1}/api.proto.
 */
const protoPath = (p: string): string => fileURLToPath(new URL(`../../proto/${p}`, import.meta.url));

/** `PluginInfo.type` for DRA drivers (pluginregistration/v1 constants.go `DRAPlugin`). */
export const DRA_PLUGIN_TYPE = 'DRAPlugin';
/**
 * The registration labels of the DRA service versions (`DRAPluginService` in k8s.io/kubelet/pkg/apis/dra/{v1,v1beta1}
 * types.go): a plugin lists them in `supported_versions`; kubelet 1.34.4 (dra_plugin_manager.go
 * validateSupportedServices) takes the first entry of the plugin's list it knows, so v1 goes first. They
 * are labels, not the gRPC names: the methods stay `/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/…`
 * (h13c read this at the pinned kubelet; a full gRPC name in the list makes kubelet refuse the plugin).
 */
export const DRA_SERVICE_V1 = 'v1.DRAPlugin';
export const DRA_SERVICE_V1BETA1 = 'v1beta1.DRAPlugin';
export const DRA_SERVICES = [DRA_SERVICE_V1, DRA_SERVICE_V1BETA1] as const;

export interface Claim {
  namespace: string;
  uid: string;
  name: string;
}
export interface NodePrepareResourcesRequest {
  claims: Claim[];
}
export interface PreparedDevice {
  request_names: string[];
  pool_name: string;
  device_name: string;
  cdi_device_ids: string[];
}
export interface NodePrepareResourceResponse {
  devices: PreparedDevice[];
  error: string;
}
export interface NodePrepareResourcesResponse {
  claims: Record<string, NodePrepareResourceResponse>;
}
export interface NodeUnprepareResourcesRequest {
  claims: Claim[];
}
export interface NodeUnprepareResourceResponse {
  error: string;
}
export interface NodeUnprepareResourcesResponse {
  claims: Record<string, NodeUnprepareResourceResponse>;
}
export interface PluginInfo {
  type: string;
  name: string;
  endpoint: string;
  supported_versions: string[];
}
export interface RegistrationStatus {
  plugin_registered: boolean;
  error: string;
}

export interface DraPluginClient extends grpc.Client {
  NodePrepareResources(req: NodePrepareResourcesRequest, opts: grpc.CallOptions, cb: grpc.requestCallback<NodePrepareResourcesResponse>): grpc.ClientUnaryCall;
  NodeUnprepareResources(req: NodeUnprepareResourcesRequest, opts: grpc.CallOptions, cb: grpc.requestCallback<NodeUnprepareResourcesResponse>): grpc.ClientUnaryCall;
}
export interface PluginRegistrationClient extends grpc.Client {
  GetInfo(req: object, opts: grpc.CallOptions, cb: grpc.requestCallback<PluginInfo>): grpc.ClientUnaryCall;
  NotifyRegistrationStatus(req: RegistrationStatus, opts: grpc.CallOptions, cb: grpc.requestCallback<object>): grpc.ClientUnaryCall;
}

type ClientCtor<C> = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ClientOptions) => C;

export interface DraApi {
  readonly draV1Service: grpc.ServiceDefinition;
  readonly draV1beta1Service: grpc.ServiceDefinition;
  readonly registrationService: grpc.ServiceDefinition;
  readonly DraV1Client: ClientCtor<DraPluginClient>;
  readonly DraV1beta1Client: ClientCtor<DraPluginClient>;
  readonly RegistrationClient: ClientCtor<PluginRegistrationClient>;
}

const LOAD_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, arrays: true, objects: true, oneofs: true };

let cached: DraApi | undefined;

/** Loads (once per process) the three definitions. */
export function loadDraApi(): DraApi {
  if (cached) return cached;
  const load = (p: string): grpc.GrpcObject => grpc.loadPackageDefinition(protoLoader.loadSync(protoPath(p), LOAD_OPTIONS));
  type Svc = grpc.ServiceClientConstructor;
  const dra = (o: grpc.GrpcObject, v: string): Svc =>
    (o as unknown as { k8s: { io: { kubelet: { pkg: { apis: { dra: Record<string, { DRAPlugin: Svc }> } } } } } }).k8s.io.kubelet.pkg.apis.dra[v]!.DRAPlugin;
  const v1 = dra(load('dra/v1/api.proto'), 'v1');
  const v1beta1 = dra(load('dra/v1beta1/api.proto'), 'v1beta1');
  const reg = (load('pluginregistration/v1/api.proto') as unknown as { pluginregistration: { Registration: Svc } }).pluginregistration.Registration;
  cached = {
    draV1Service: v1.service,
    draV1beta1Service: v1beta1.service,
    registrationService: reg.service,
    DraV1Client: v1 as unknown as ClientCtor<DraPluginClient>,
    DraV1beta1Client: v1beta1 as unknown as ClientCtor<DraPluginClient>,
    RegistrationClient: reg as unknown as ClientCtor<PluginRegistrationClient>,
  };
  return cached;
}
