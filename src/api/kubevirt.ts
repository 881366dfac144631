import type { ObjectMeta } from './meta.js';

/**
 * The kubevirt.io/v1 subset the operator reads and writes: the KubeVirt CR's permitted host devices.
 * KubeVirt's schema is not ours to ship, so its guard is a hand-written shape check of the list we rewrite.
 */

/** KubeVirt's CR (namespaced, usually `kubevirt/kubevirt`); we only patch its permitted host devices. */
export const KUBEVIRT = {
  group: 'kubevirt.io',
  version: 'v1',
  kind: 'KubeVirt',
  plural: 'kubevirts',
  crdName: 'kubevirts.kubevirt.io',
} as const;


export interface PciHostDevice {
  pciVendorSelector: string; // `10DE:2331`
  resourceName: string;
  externalResourceProvider?: boolean;
}

export interface KubeVirtCr {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: {
    configuration?: {
      permittedHostDevices?: {
        pciHostDevices?: PciHostDevice[];
        [other: string]: unknown;
      };
      [other: string]: unknown;
    };
    [other: string]: unknown;
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A named object whose `pciHostDevices`, when present, is a list of {pciVendorSelector, resourceName} strings. */
export function isKubeVirtCr(v: unknown): v is KubeVirtCr {
  if (!isRecord(v) || !isRecord(v['metadata']) || typeof v['metadata']['name'] !== 'string' || v['metadata']['name'] === '') return false;
  const list = (v as unknown as KubeVirtCr).spec?.configuration?.permittedHostDevices?.pciHostDevices;
  return (
    list === undefined ||
    (Array.isArray(list) &&
      list.every((d) => isRecord(d) && typeof d['pciVendorSelector'] === 'string' && typeof d['resourceName'] === 'string'))
  );
}
