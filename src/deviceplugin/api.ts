import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

/**
 * The kubelet device-plugin API (v1beta1), loaded at runtime from `proto/` with proto-loader — no protoc.
 * `keepCase` keeps the wire names (`devices_ids`, `ID`, ...) as the JS property names, so the TS shapes
 * below mirror the .proto one to one.
 *
 * The proto lives at the repository root and ships in the package's `files`; both `src/deviceplugin`
 * (vitest) and `dist/deviceplugin` (the built CLI) sit two levels below that root.
 */
export const API_PROTO_PATH = fileURLToPath(new URL('../../proto/deviceplugin/v1beta1/api.proto', import.meta.url));

export const API_VERSION = 'v1beta1';
export const KUBELET_SOCKET = 'kubelet.sock';
// The device source's health values are kubelet's strings (src/devices/model.ts).
export { HEALTHY, UNHEALTHY, type Health } from '../devices/model.js';

export interface DevicePluginOptions {
  pre_start_required: boolean;
  get_preferred_allocation_available: boolean;
}
export interface RegisterRequest {
  version: string;
  endpoint: string;
  resource_name: string;
  options?: DevicePluginOptions | null;
}
export type Empty = Record<string, never>;
export interface NumaNode {
  ID: number;
}
export interface TopologyInfo {
  nodes: NumaNode[];
}
export interface Device {
  ID: string;
  health: string;
  topology?: TopologyInfo | null;
}
export interface ListAndWatchResponse {
  devices: Device[];
}
export interface ContainerPreferredAllocationRequest {
  available_deviceIDs: string[];
  must_include_deviceIDs: string[];
  allocation_size: number;
}
export interface PreferredAllocationRequest {
  container_requests: ContainerPreferredAllocationRequest[];
}
export interface ContainerPreferredAllocationResponse {
  deviceIDs: string[];
}
export interface PreferredAllocationResponse {
  container_responses: ContainerPreferredAllocationResponse[];
}
export interface ContainerAllocateRequest {
  devices_ids: string[];
}
export interface AllocateRequest {
  container_requests: ContainerAllocateRequest[];
}
export interface Mount {
  container_path: string;
  host_path: string;
  read_only: boolean;
}
export interface DeviceSpec {
  container_path: string;
  host_path: string;
  permissions: string;
}
export interface CdiDevice {
  name: string;
}
export interface ContainerAllocateResponse {
  envs: Record<string, string>;
  mounts: Mount[];
  devices: DeviceSpec[];
  annotations: Record<string, string>;
  cdi_devices: CdiDevice[];
}
export interface AllocateResponse {
  container_responses: ContainerAllocateResponse[];
}
export interface PreStartContainerRequest {
  devices_ids: string[];
}
export type PreStartContainerResponse = Record<string, never>;

/** The typed client side of `v1beta1.DevicePlugin` as grpc-js builds it (what kubelet calls). */
export interface DevicePluginClient extends grpc.Client {
  GetDevicePluginOptions(req: Empty, opts: grpc.CallOptions, cb: grpc.requestCallback<DevicePluginOptions>): grpc.ClientUnaryCall;
  ListAndWatch(req: Empty, opts?: grpc.CallOptions): grpc.ClientReadableStream<ListAndWatchResponse>;
  GetPreferredAllocation(
    req: PreferredAllocationRequest,
    opts: grpc.CallOptions,
    cb: grpc.requestCallback<PreferredAllocationResponse>,
  ): grpc.ClientUnaryCall;
  Allocate(req: AllocateRequest, opts: grpc.CallOptions, cb: grpc.requestCallback<AllocateResponse>): grpc.ClientUnaryCall;
  PreStartContainer(
    req: PreStartContainerRequest,
    opts: grpc.CallOptions,
    cb: grpc.requestCallback<PreStartContainerResponse>,
  ): grpc.ClientUnaryCall;
}

/** The typed client side of `v1beta1.Registration` (what a plugin calls on kubelet.sock). */
export interface RegistrationClient extends grpc.Client {
  Register(req: RegisterRequest, opts: grpc.CallOptions, cb: grpc.requestCallback<Empty>): grpc.ClientUnaryCall;
}

type ClientCtor<C> = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ClientOptions) => C;

export interface DevicePluginApi {
  readonly definition: protoLoader.PackageDefinition;
  readonly registrationService: grpc.ServiceDefinition;
  readonly devicePluginService: grpc.ServiceDefinition;
  readonly RegistrationClient: ClientCtor<RegistrationClient>;
  readonly DevicePluginClient: ClientCtor<DevicePluginClient>;
}

let cached: DevicePluginApi | undefined;

/** Loads (once per process) the v1beta1 definitions. Longs decode as JS numbers (NUMA ids are tiny). */
export function loadDevicePluginApi(): DevicePluginApi {
  if (cached) return cached;
  const definition = protoLoader.loadSync(API_PROTO_PATH, {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    arrays: true,
    objects: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    v1beta1: {
      Registration: grpc.ServiceClientConstructor;
      DevicePlugin: grpc.ServiceClientConstructor;
    };
  };
  cached = {
    definition,
    registrationService: pkg.v1beta1.Registration.service,
    devicePluginService: pkg.v1beta1.DevicePlugin.service,
    RegistrationClient: pkg.v1beta1.Registration as unknown as ClientCtor<RegistrationClient>,
    DevicePluginClient: pkg.v1beta1.DevicePlugin as unknown as ClientCtor<DevicePluginClient>,
  };
  return cached;
}

/** grpc-js target for a unix socket path (absolute). */
export function unixTarget(socketPath: string): string {
  return `unix://${socketPath}`;
}
