/**
 * The validation the real kube-apiserver applies to resource.k8s.io/v1 ResourceSlices, so a stand-in test
 * fails where the real API server would (k8s.io/kubernetes pkg/apis/resource/validation/validation.go,
 * v1.34: ValidateResourceSlice, validateResourcePool, validateDevice, validateDeviceAttribute and the
 * limits in k8s.io/api/resource/v1 types.go). Returns the field errors, `[]` when valid.
 */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const C_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** resource.k8s.io/v1 limits. */
export const RESOURCE_SLICE_MAX_DEVICES = 128;
export const DEVICE_MAX_ATTRIBUTES_AND_CAPACITIES = 32;
export const DEVICE_ATTRIBUTE_MAX_VALUE_LENGTH = 64;
export const DEVICE_MAX_ID_LENGTH = 32;
export const DEVICE_MAX_DOMAIN_LENGTH = 63;
export const DRIVER_NAME_MAX_LENGTH = 63;
export const POOL_NAME_MAX_LENGTH = 253;

const isSubdomain = (s: string, max = 253): boolean => s.length <= max && DNS_SUBDOMAIN.test(s);

export function validateResourceSlice(obj: Record<string, unknown>, old?: Record<string, unknown>): string[] {
  const errs: string[] = [];
  const meta = (obj['metadata'] ?? {}) as Record<string, unknown>;
  const name = meta['name'];
  if (typeof name === 'string' && name !== '' && !isSubdomain(name)) errs.push(`metadata.name: Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`);
  const spec = obj['spec'] as Record<string, unknown> | undefined;
  if (!spec || typeof spec !== 'object') return [...errs, 'spec: Required value'];
  const driver = spec['driver'];
  if (typeof driver !== 'string' || driver === '') errs.push('spec.driver: Required value');
  else if (!isSubdomain(driver, DRIVER_NAME_MAX_LENGTH)) errs.push(`spec.driver: Invalid value: "${driver}": must be a DNS subdomain of at most ${DRIVER_NAME_MAX_LENGTH} characters`);
  const pool = spec['pool'] as Record<string, unknown> | undefined;
  if (!pool || typeof pool !== 'object') errs.push('spec.pool: Required value');
  else {
    const pn = pool['name'];
    if (typeof pn !== 'string' || pn === '') errs.push('spec.pool.name: Required value');
    else if (pn.length > POOL_NAME_MAX_LENGTH || !pn.split('/').every((seg) => isSubdomain(seg))) errs.push(`spec.pool.name: Invalid value: "${pn}": must be DNS subdomains separated by "/"`);
    if (typeof pool['generation'] !== 'number' || pool['generation'] < 0) errs.push('spec.pool.generation: Invalid value: must be greater than or equal to 0');
    if (typeof pool['resourceSliceCount'] !== 'number' || pool['resourceSliceCount'] <= 0) errs.push('spec.pool.resourceSliceCount: Invalid value: must be greater than zero');
  }
  const selectors = ['nodeName', 'nodeSelector', 'allNodes', 'perDeviceNodeSelection'].filter((k) => spec[k] !== undefined && spec[k] !== '' && spec[k] !== false);
  if (selectors.length !== 1) errs.push('spec: Invalid value: exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required');
  if (typeof spec['nodeName'] === 'string' && spec['nodeName'] !== '' && !isSubdomain(spec['nodeName'])) errs.push(`spec.nodeName: Invalid value: "${spec['nodeName']}"`);
  const devices = (spec['devices'] ?? []) as unknown[];
  if (!Array.isArray(devices)) errs.push('spec.devices: Invalid value: must be a list');
  else {
    if (devices.length > RESOURCE_SLICE_MAX_DEVICES) errs.push(`spec.devices: Too many: ${devices.length}: must have at most ${RESOURCE_SLICE_MAX_DEVICES} items`);
    const seen = new Set<string>();
    devices.forEach((d, i) => errs.push(...validateDevice(d as Record<string, unknown>, `spec.devices[${i}]`, seen)));
  }
  if (old) {
    const os = (old['spec'] ?? {}) as Record<string, unknown>;
    if (os['driver'] !== spec['driver']) errs.push('spec.driver: Invalid value: field is immutable');
    if ((os['nodeName'] ?? '') !== (spec['nodeName'] ?? '')) errs.push('spec.nodeName: Invalid value: field is immutable');
  }
  return errs;
}

function validateDevice(d: Record<string, unknown>, path: string, seen: Set<string>): string[] {
  const errs: string[] = [];
  const name = d?.['name'];
  if (typeof name !== 'string' || name === '') errs.push(`${path}.name: Required value`);
  else if (name.length > 63 || !DNS_LABEL.test(name)) errs.push(`${path}.name: Invalid value: "${name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'`);
  else if (seen.has(name)) errs.push(`${path}.name: Duplicate value: "${name}"`);
  else seen.add(name);
  const attrs = (d?.['attributes'] ?? {}) as Record<string, Record<string, unknown>>;
  const caps = (d?.['capacity'] ?? {}) as Record<string, unknown>;
  const n = Object.keys(attrs).length + Object.keys(caps).length;
  if (n > DEVICE_MAX_ATTRIBUTES_AND_CAPACITIES) errs.push(`${path}: Too many: ${n}: must have at most ${DEVICE_MAX_ATTRIBUTES_AND_CAPACITIES} attributes and capacities combined`);
  for (const [key, value] of Object.entries(attrs)) {
    const p = `${path}.attributes[${key}]`;
    errs.push(...validateQualifiedName(key, p));
    const set = ['bool', 'int', 'string', 'version'].filter((k) => value?.[k] !== undefined);
    if (set.length !== 1) errs.push(`${p}: Invalid value: exactly one value must be specified`);
    const s = value?.['string'];
    if (typeof s === 'string' && s.length > DEVICE_ATTRIBUTE_MAX_VALUE_LENGTH) errs.push(`${p}.string: Too long: may not be more than ${DEVICE_ATTRIBUTE_MAX_VALUE_LENGTH} bytes`);
    if (value?.['int'] !== undefined && !Number.isInteger(value['int'])) errs.push(`${p}.int: Invalid value: must be an integer`);
    if (value?.['bool'] !== undefined && typeof value['bool'] !== 'boolean') errs.push(`${p}.bool: Invalid value: must be a boolean`);
  }
  return errs;
}

/** A qualified attribute name: a C identifier of at most 32 characters, optionally `<DNS subdomain ≤63>/` before it. */
function validateQualifiedName(key: string, path: string): string[] {
  const slash = key.indexOf('/');
  const domain = slash >= 0 ? key.slice(0, slash) : undefined;
  const id = slash >= 0 ? key.slice(slash + 1) : key;
  const errs: string[] = [];
  if (domain !== undefined && !isSubdomain(domain, DEVICE_MAX_DOMAIN_LENGTH)) errs.push(`${path}: Invalid value: "${domain}": the domain must be a DNS subdomain of at most ${DEVICE_MAX_DOMAIN_LENGTH} characters`);
  if (id.length > DEVICE_MAX_ID_LENGTH || !C_IDENTIFIER.test(id)) errs.push(`${path}: Invalid value: "${id}": a valid C identifier of at most ${DEVICE_MAX_ID_LENGTH} characters is required`);
  return errs;
}
