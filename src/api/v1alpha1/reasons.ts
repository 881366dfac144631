/**
 * The reason codes a GPU's status carries (NodeGpuPassthrough status.gpus[].reason) and the handoff
 * engine's verdict returns (src/handoff/verdict.ts): why a GPU cannot be handed over (REASON_CODES)
 * and what handing it over will cost (WARNING_CODES). Metrics label values come from the same lists.
 */

export const REASON_CODES = [
  'IOMMU_OFF',
  'NO_IOMMU_GROUP',
  'FOREIGN_DEVICE',
  'BOOT_GPU_NOT_PERMITTED',
  'VFIO_PCI_MISSING',
  'SRIOV_VFS_ENABLED',
  'HOST_DRIVER_BUSY',
  'BAR_CLAIMED',
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];

export const WARNING_CODES = [
  'CONSOLE_WILL_GO_DARK',
  'SYSFB_REMOVED_BY_ANY_VGA',
  'FRAMEBUFFER_NOT_RESTORABLE',
  'NO_RESET_METHOD',
  'RESET_METHOD_UNKNOWN',
  'BOOT_GPU',
  'FOREIGN_DEVICE_ON_VFIO',
  'NO_NATIVE_DRIVER',
  'VFIO_NODE_MISSING',
] as const;
export type WarningCode = (typeof WARNING_CODES)[number];
