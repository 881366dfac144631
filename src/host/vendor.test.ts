import { describe, expect, it } from 'vitest';
import { discoverHost } from './discover.js';
import { notReady } from './readiness.js';
import { isCardFunction, isUserDmaDriver, isVfioDriver, knownResetQuirk, variantDriverFromAliases } from './vendor.js';
import type { PciAddress } from '../core/pci-address.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';

describe('vendor knowledge', () => {
  it('counts vfio-pci and its variant drivers as VFIO drivers, pci-stub only as viable', () => {
    expect(['vfio-pci', 'nvgrace_gpu_vfio_pci', 'mlx5_vfio_pci'].every(isVfioDriver)).toBe(true);
    expect(['nvidia', 'pci-stub', 'vfio', undefined].some(isVfioDriver)).toBe(false);
    expect(isUserDmaDriver('pci-stub')).toBe(true);
    expect(isUserDmaDriver('pcieport')).toBe(false);
  });

  it('picks a variant driver from modules.alias by vendor and device, honouring wildcards', () => {
    const aliases = [
      'alias pci:v000010DEd00002342sv*sd*bc*sc*i* nvidia',
      'alias vfio_pci:v000010DEd00002342sv*sd*bc*sc*i* nvgrace_gpu_vfio_pci',
      'alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci',
    ].join('\n');
    expect(variantDriverFromAliases(aliases, '10de', '2342')).toBe('nvgrace_gpu_vfio_pci');
    expect(variantDriverFromAliases(aliases, '10de', '2330')).toBeUndefined();
    expect(variantDriverFromAliases(aliases, '15b3', '101e')).toBe('mlx5_vfio_pci');
  });

  it('ties functions to the GPU card by slot and vendor (QEMU-composed slots by their 1af4 subsystem)', () => {
    const f = (address: string, vendorId: string, subsystemVendorId: string) => ({ address: address as PciAddress, vendorId, subsystemVendorId });
    const gpu = f('0000:04:00.0', '1002', '17aa');
    expect(isCardFunction(gpu, f('0000:04:00.1', '1002', '17aa'))).toBe(true);
    expect(isCardFunction(gpu, f('0000:04:00.6', '1022', '17aa'))).toBe(false);
    expect(isCardFunction(gpu, f('0000:05:00.1', '1002', '17aa'))).toBe(false);
    expect(isCardFunction(f('0000:00:02.0', '1234', '1af4'), f('0000:00:02.1', '8086', '1af4'))).toBe(true);
  });

  it('knows the NVIDIA bus-reset quirk devices', () => {
    expect(knownResetQuirk({ vendorId: '10de', deviceId: '2342' })).toMatch(/bus reset/);
    expect(knownResetQuirk({ vendorId: '10de', deviceId: '1eb8' })).toMatch(/bus reset/);
    expect(knownResetQuirk({ vendorId: '10de', deviceId: '2330' })).toBeUndefined();
  });

  it('a GH200 on nvgrace_gpu_vfio_pci is ready by the one readiness rule', async () => {
    const kernel = new SimulatedKernel({
      name: 'gh200',
      kernelRelease: '6.8.0-1013-nvidia-64k',
      loadedDrivers: ['nvgrace_gpu_vfio_pci'],
      devices: [{ address: '0009:01:00.0', class: '0x030200', vendor: '10de', device: '2342', driver: 'nvgrace_gpu_vfio_pci', iommuGroup: 12 }],
    });
    const snap = await discoverHost(kernel);
    expect(notReady(snap, '0009:01:00.0' as PciAddress)).toBeUndefined();
  });
});
