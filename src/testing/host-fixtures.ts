/**
 * Host profiles that tests construct rather than take from a public report (src/profiles/builtin holds
 * those). Each says what it is built from.
 */
import type { HostProfile } from '../profiles/profile.js';
import { parseProfile } from '../profiles/load.js';

/**
 * Two GPUs in one IOMMU group: an Intel desktop whose CPU x16 lanes are split x8/x8 over the root ports
 * 00:01.0 (8086:1901) and 00:01.1 (8086:1905). Those client root ports have no ACS, so both ports and
 * everything behind them land in group 1 (the mechanism of hosts.md profile 8, where the one root port
 * shares the GPU's group; constructed, not copied from a report). Two RTX 3090s (10de:2204, audio
 * 10de:1aef, as in hosts.md profile 9b) on nvidia/snd_hda_intel; the iGPU 00:02.0 is the boot VGA in its
 * own group 2.
 */
export const TWO_GPUS_ONE_GROUP_YAML = `
name: desktop-two-gpus-one-group
description: constructed (src/testing/host-fixtures.ts)
kernelRelease: 6.8.0-51-generic
iommu: true
loadedDrivers: [pcieport, i915, nvidia, snd_hda_intel]
availableModules: [vfio-pci, nvidia]
devices:
  - { address: "0000:00:00.0", class: "0x060000", vendor: "8086", device: "3e30", iommuGroup: 0 }
  - { address: "0000:00:01.0", class: "0x060400", vendor: "8086", device: "1901", driver: pcieport, iommuGroup: 1 }
  - { address: "0000:00:01.1", class: "0x060400", vendor: "8086", device: "1905", driver: pcieport, iommuGroup: 1 }
  - { address: "0000:00:02.0", class: "0x030000", vendor: "8086", device: "3e92", driver: i915, iommuGroup: 2, bootVga: true,
      bars: [ { index: 0, start: "0xf6000000", size: 16M, is64: true }, { index: 2, start: "0xc0000000", size: 256M, prefetchable: true, is64: true } ] }
  - { address: "0000:01:00.0", parent: "0000:00:01.0", class: "0x030000", vendor: "10de", device: "2204", subsystemVendor: "1458", subsystemDevice: "403b",
      driver: nvidia, iommuGroup: 1, bootVga: false, resetMethods: [bus], consumers: ["consumer:pci:0000:01:00.1"],
      bars: [ { index: 0, start: "0xf4000000", size: 16M }, { index: 1, start: "0x4000000000", size: 32G, prefetchable: true, is64: true } ] }
  - { address: "0000:01:00.1", parent: "0000:00:01.0", class: "0x040300", vendor: "10de", device: "1aef", subsystemVendor: "1458", subsystemDevice: "403b",
      driver: snd_hda_intel, iommuGroup: 1, resetMethods: [bus], bars: [ { index: 0, start: "0xf5080000", size: 16K } ] }
  - { address: "0000:02:00.0", parent: "0000:00:01.1", class: "0x030000", vendor: "10de", device: "2204", subsystemVendor: "1458", subsystemDevice: "403b",
      driver: nvidia, iommuGroup: 1, bootVga: false, resetMethods: [bus], consumers: ["consumer:pci:0000:02:00.1"],
      bars: [ { index: 0, start: "0xf2000000", size: 16M }, { index: 1, start: "0x3000000000", size: 32G, prefetchable: true, is64: true } ] }
  - { address: "0000:02:00.1", parent: "0000:00:01.1", class: "0x040300", vendor: "10de", device: "1aef", subsystemVendor: "1458", subsystemDevice: "403b",
      driver: snd_hda_intel, iommuGroup: 1, resetMethods: [bus], bars: [ { index: 0, start: "0xf3080000", size: 16K } ] }
`;

/** The profile of {@link TWO_GPUS_ONE_GROUP_YAML}, validated like a user's profile file. */
export function twoGpusOneGroup(): HostProfile {
  return parseProfile(TWO_GPUS_ONE_GROUP_YAML, 'desktop-two-gpus-one-group');
}
