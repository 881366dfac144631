import { describe, expect, it } from 'vitest';
import type { MethodDefinition } from '@grpc/proto-loader';
import { loadDevicePluginApi } from './api.js';

/**
 * Wire compatibility: golden bytes written by hand from the protobuf wire format (tag = field<<3 | wire
 * type; 0 = varint, 2 = length-delimited; lengths as single-byte varints) in the canonical form Go's
 * kubelet emits (proto3 defaults omitted). Our loaded definitions must encode to exactly these bytes and
 * decode them back.
 */
const bytes = (...parts: (number | string)[]): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : Buffer.from(p, 'latin1'))));

const method = (service: 'Registration' | 'DevicePlugin', rpc: string): MethodDefinition<object, object> => {
  const svc = loadDevicePluginApi().definition[`v1beta1.${service}`] as Record<string, MethodDefinition<object, object>>;
  const m = svc[rpc];
  if (!m) throw new Error(`no ${rpc}`);
  return m;
};

describe('device-plugin v1beta1 wire format', () => {
  it('uses the upstream full method paths', () => {
    expect(method('Registration', 'Register').path).toBe('/v1beta1.Registration/Register');
    expect(method('DevicePlugin', 'GetDevicePluginOptions').path).toBe('/v1beta1.DevicePlugin/GetDevicePluginOptions');
    expect(method('DevicePlugin', 'ListAndWatch').responseStream).toBe(true);
    expect(method('DevicePlugin', 'GetPreferredAllocation').path).toBe('/v1beta1.DevicePlugin/GetPreferredAllocation');
    expect(method('DevicePlugin', 'Allocate').path).toBe('/v1beta1.DevicePlugin/Allocate');
    expect(method('DevicePlugin', 'PreStartContainer').path).toBe('/v1beta1.DevicePlugin/PreStartContainer');
  });

  it('RegisterRequest with options', () => {
    const golden = bytes(
      0x0a, 7, 'v1beta1', // 1: version
      0x12, 7, 'dp.sock', // 2: endpoint
      0x1a, 16, 'nvidia.com/GA102', // 3: resource_name
      0x22, 2, // 4: options (length-delimited message)
      0x10, 0x01, //   2: get_preferred_allocation_available = true (pre_start_required=false omitted)
    );
    const m = method('Registration', 'Register');
    const msg = { version: 'v1beta1', endpoint: 'dp.sock', resource_name: 'nvidia.com/GA102', options: { get_preferred_allocation_available: true } };
    expect(m.requestSerialize(msg).toString('hex')).toBe(golden.toString('hex'));
    expect(m.requestDeserialize(golden)).toEqual({
      version: 'v1beta1',
      endpoint: 'dp.sock',
      resource_name: 'nvidia.com/GA102',
      options: { pre_start_required: false, get_preferred_allocation_available: true },
    });
  });

  it('an explicitly encoded false default decodes the same as the omitted one', () => {
    const m = method('Registration', 'Register');
    const explicit = bytes(0x22, 4, 0x08, 0x00, 0x10, 0x01);
    expect(m.requestDeserialize(explicit)).toMatchObject({ options: { pre_start_required: false, get_preferred_allocation_available: true } });
  });

  it('ListAndWatchResponse with topology', () => {
    const golden = bytes(
      0x0a, 29, // 1: devices[0], 29 bytes
      0x0a, 12, '0000:01:00.0', //   1: ID
      0x12, 7, 'Healthy', //   2: health
      0x1a, 4, //   3: topology
      0x0a, 2, //     1: nodes[0]
      0x08, 0x01, //       1: ID = 1 (int64 varint)
      0x0a, 25, // 1: devices[1], no topology
      0x0a, 12, '0000:02:00.0',
      0x12, 9, 'Unhealthy',
    );
    const m = method('DevicePlugin', 'ListAndWatch');
    const msg = {
      devices: [
        { ID: '0000:01:00.0', health: 'Healthy', topology: { nodes: [{ ID: 1 }] } },
        { ID: '0000:02:00.0', health: 'Unhealthy' },
      ],
    };
    expect(m.responseSerialize(msg).toString('hex')).toBe(golden.toString('hex'));
    expect(m.responseDeserialize(golden)).toEqual({
      devices: [
        { ID: '0000:01:00.0', health: 'Healthy', topology: { nodes: [{ ID: 1 }] } },
        { ID: '0000:02:00.0', health: 'Unhealthy', topology: null },
      ],
    });
  });

  it('AllocateRequest with two container requests', () => {
    const golden = bytes(
      0x0a, 28, // 1: container_requests[0]
      0x0a, 12, '0000:01:00.0', //   1: devices_ids[0]
      0x0a, 12, '0000:02:00.0', //   1: devices_ids[1]
      0x0a, 14, // 1: container_requests[1]
      0x0a, 12, '0000:03:00.0',
    );
    const m = method('DevicePlugin', 'Allocate');
    const msg = { container_requests: [{ devices_ids: ['0000:01:00.0', '0000:02:00.0'] }, { devices_ids: ['0000:03:00.0'] }] };
    expect(m.requestSerialize(msg).toString('hex')).toBe(golden.toString('hex'));
    expect(m.requestDeserialize(golden)).toEqual(msg);
  });

  it('ContainerAllocateResponse with an envs map entry and device specs', () => {
    const car = bytes(
      0x0a, 45, // 1: envs map entry (key=1, value=2)
      0x0a, 29, 'PCI_RESOURCE_NVIDIA_COM_GA102',
      0x12, 12, '0000:01:00.0',
      0x1a, 37, // 3: devices[0]
      0x0a, 14, '/dev/vfio/vfio', //   1: container_path
      0x12, 14, '/dev/vfio/vfio', //   2: host_path
      0x1a, 3, 'mrw', //   3: permissions
      0x1a, 33, // 3: devices[1]
      0x0a, 12, '/dev/vfio/12',
      0x12, 12, '/dev/vfio/12',
      0x1a, 3, 'mrw',
    );
    expect(car.length).toBe(121);
    // AllocateResponse { 1: container_responses[0] = car }
    const golden = Buffer.concat([bytes(0x0a, 121), car]);
    const m = method('DevicePlugin', 'Allocate');
    const response = {
      envs: { PCI_RESOURCE_NVIDIA_COM_GA102: '0000:01:00.0' },
      devices: [
        { container_path: '/dev/vfio/vfio', host_path: '/dev/vfio/vfio', permissions: 'mrw' },
        { container_path: '/dev/vfio/12', host_path: '/dev/vfio/12', permissions: 'mrw' },
      ],
    };
    expect(m.responseSerialize({ container_responses: [response] }).toString('hex')).toBe(golden.toString('hex'));
    expect(m.responseDeserialize(golden)).toEqual({
      container_responses: [{ ...response, mounts: [], annotations: {}, cdi_devices: [] }],
    });
  });

  it('ContainerPreferredAllocationRequest keeps the mixed-case field names', () => {
    const golden = bytes(
      0x0a, 17, // 1: container_requests[0]
      0x0a, 1, 'a', //   1: available_deviceIDs
      0x0a, 1, 'b',
      0x12, 1, 'a', //   2: must_include_deviceIDs
      0x18, 0x02, //   3: allocation_size = 2
      0x0a, 1, 'c', //   (repeated fields may interleave on the wire)
      0x12, 1, 'c',
    );
    const m = method('DevicePlugin', 'GetPreferredAllocation');
    expect(m.requestDeserialize(golden)).toEqual({
      container_requests: [{ available_deviceIDs: ['a', 'b', 'c'], must_include_deviceIDs: ['a', 'c'], allocation_size: 2 }],
    });
    const resp = bytes(0x0a, 6, 0x0a, 1, 'a', 0x0a, 1, 'c');
    expect(m.responseSerialize({ container_responses: [{ deviceIDs: ['a', 'c'] }] }).toString('hex')).toBe(resp.toString('hex'));
  });
});
