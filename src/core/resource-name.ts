/**
 * THE resource-name rule, shared by the CRD tests, the operator, the agent, the device plugin and its
 * overrides: kubelet's `IsExtendedResourceName` (k8s.io/kubernetes pkg/apis/core/v1/helper, the check
 * kubelet's device manager runs on every Register; protocol.md §2.1). A name passes when it is not a
 * native resource (it has a `/` and does not contain `kubernetes.io/` anywhere — so
 * `examplekubernetes.io/gpu` is native too), does not start with `requests.`, and `requests.<name>` is a
 * qualified name: a DNS-1123 subdomain prefix of at most 253 characters, one `/`, and a name part of
 * 1-63 characters `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`. test/peers checks this against kubelet's
 * own function.
 */

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/** Why `name` is not a valid extended resource name for kubelet, or `undefined` when it is. */
export function extendedResourceNameProblem(name: string): string | undefined {
  const slash = name.indexOf('/');
  if (slash < 0) return 'needs a domain prefix (vendor-domain/resourcetype)';
  if (name.includes('kubernetes.io/')) return 'names containing "kubernetes.io/" are native resources, reserved';
  if (name.startsWith('requests.')) return 'must not start with "requests."';
  if (name.indexOf('/', slash + 1) >= 0) return 'must contain exactly one "/"';
  const prefix = `requests.${name.slice(0, slash)}`;
  const part = name.slice(slash + 1);
  if (prefix.length > 253) return 'the domain must be at most 244 characters';
  if (!DNS1123_SUBDOMAIN.test(prefix)) return 'the domain must be a lower-case DNS-1123 subdomain';
  if (part.length === 0 || part.length > 63) return 'the name after "/" must be 1-63 characters';
  if (!QUALIFIED_NAME_PART.test(part)) return 'the name after "/" must be alphanumeric, "-", "_" or ".", starting and ending alphanumeric';
  return undefined;
}

export function isExtendedResourceName(name: string): boolean {
  return extendedResourceNameProblem(name) === undefined;
}

/**
 * KubeVirt's `ResourceNameToEnvVar("PCI_RESOURCE", name)` (pkg/util): upper-case, `/` and `.` → `_`
 * (`-` is kept). Kubelet merges the env of all a container's device allocations into one map and keeps
 * the first value it meets (map order), only logging "Environment variable has conflicting setting"
 * (devicemanager pod_devices.go): two names with one variable (`example.com/gpu.a`, `example.com/GPU_A`)
 * hide one another's addresses from virt-launcher, so they must never be served together on one node.
 */
export function pciResourceEnvVar(resourceName: string): string {
  return `PCI_RESOURCE_${resourceName.toUpperCase().replaceAll('/', '_').replaceAll('.', '_')}`;
}
