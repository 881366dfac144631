// Profiles are files shipped with the package or given by the user (`--profile FILE`), not host
// state, so reading them here does not break the "only src/sysfs touches the host" rule.
import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { InvalidArgumentError, ProfileError } from '../core/errors.js';
import { parsePciAddress } from '../core/pci-address.js';
import type { HostProfile } from './profile.js';
import { parseHexBig, parseSize } from './values.js';

const HEX_ID = '^(0x)?[0-9a-fA-F]{4}$';
const HEX_CLASS = '^0x[0-9a-fA-F]{6}$';
const HEX_NUM = '^(0x)?[0-9a-fA-F]+$';
const SIZE = '^(0x[0-9a-fA-F]+|[0-9]+|[0-9]+[KMGTkmgt])$';
const ADDRESS = '^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\\.[0-7]$';
const NAME = '^[A-Za-z0-9_.:+-]+$';

/** JSON schema of the YAML profile format (mirrors `HostProfile`). Exported for docs and tooling. */
export const HOST_PROFILE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'kernelRelease', 'loadedDrivers', 'devices'],
  properties: {
    name: { type: 'string', pattern: '^[a-z0-9][a-z0-9.-]*$' },
    description: { type: 'string' },
    kernelRelease: { type: 'string', pattern: '^[0-9]+\\.[0-9]+[A-Za-z0-9._+~-]*$' },
    iommu: { type: 'boolean' },
    cpu: { enum: ['intel', 'amd', 'arm64'] },
    iommuDevices: { type: 'array', items: { type: 'string', pattern: NAME } },
    loadedDrivers: { type: 'array', items: { type: 'string', pattern: NAME } },
    availableModules: { type: 'array', items: { type: 'string', pattern: NAME } },
    iommufd: { type: 'boolean' },
    loadedModules: { type: 'array', items: { type: 'string', pattern: NAME } },
    devices: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['address', 'class', 'vendor', 'device'],
        properties: {
          address: { type: 'string', pattern: ADDRESS },
          class: { type: 'string', pattern: HEX_CLASS },
          vendor: { type: 'string', pattern: HEX_ID },
          device: { type: 'string', pattern: HEX_ID },
          subsystemVendor: { type: 'string', pattern: HEX_ID },
          subsystemDevice: { type: 'string', pattern: HEX_ID },
          revision: { type: 'string', pattern: '^0x[0-9a-fA-F]{2}$' },
          driver: { type: 'string', pattern: NAME },
          nativeDriver: { type: 'string', pattern: NAME },
          driverOverride: { type: 'string', pattern: NAME },
          iommuGroup: { type: 'integer', minimum: 0 },
          numaNode: { type: 'integer', minimum: -1 },
          bootVga: { type: 'boolean' },
          bootDisplay: { type: 'boolean' },
          resetMethods: { type: 'array', items: { type: 'string', pattern: '^[a-z_]+$' } },
          sriov: {
            type: 'object',
            additionalProperties: false,
            required: ['totalVfs', 'numVfs'],
            properties: { totalVfs: { type: 'integer', minimum: 0 }, numVfs: { type: 'integer', minimum: 0 } },
          },
          physfn: { type: 'string', pattern: ADDRESS },
          parent: { type: 'string', pattern: ADDRESS },
          bars: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['index', 'start', 'size'],
              properties: {
                index: { type: 'integer', minimum: 0, maximum: 6 },
                start: { type: 'string', pattern: HEX_NUM },
                size: { type: 'string', pattern: SIZE },
                prefetchable: { type: 'boolean' },
                is64: { type: 'boolean' },
              },
            },
          },
          consumers: { type: 'array', items: { type: 'string', pattern: '^consumer:pci:[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\\.[0-7]$' } },
        },
      },
    },
    framebuffers: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['device', 'start', 'size'],
        properties: {
          device: { type: 'string', pattern: '^[a-z0-9-]+\\.[0-9]+$' },
          driver: { type: 'string', pattern: NAME },
          claim: { type: 'string', pattern: '^[A-Za-z0-9_ -]+$' },
          resource: { type: 'string', pattern: '^[A-Za-z0-9_ -]+$' },
          start: { type: 'string', pattern: HEX_NUM },
          size: { type: 'string', pattern: SIZE },
          parent: { type: 'string', pattern: ADDRESS },
        },
      },
    },
    vtconsoles: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'description', 'bound'],
        properties: {
          name: { type: 'string', pattern: '^vtcon[0-9]+$' },
          description: { type: 'string' },
          bound: { type: 'boolean' },
        },
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: false, strict: true });
const validateSchema = ajv.compile(HOST_PROFILE_SCHEMA);

/** `/devices/2/class` → `devices[2].class` so the message names the field as the user wrote it. */
function fieldName(err: ErrorObject): string {
  const parts = err.instancePath.split('/').filter(Boolean);
  let out = '';
  for (const p of parts) out += /^[0-9]+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  if (err.keyword === 'required') out += `${out ? '.' : ''}${String(err.params['missingProperty'])}`;
  if (err.keyword === 'additionalProperties') out += `${out ? '.' : ''}${String(err.params['additionalProperty'])}`;
  return out || '(profile)';
}

/**
 * Validates a parsed YAML/JSON value as a host profile: the schema first, then the cross-field rules
 * the schema cannot express (unique addresses, drivers that are loaded, parents that exist, ...).
 * Throws `ProfileError` naming the offending field.
 */
export function validateProfile(value: unknown, source = 'profile'): HostProfile {
  if (!validateSchema(value)) {
    const err = validateSchema.errors?.[0];
    const detail = err ? `${fieldName(err)}: ${err.message ?? 'invalid'}` : 'invalid';
    throw new ProfileError(`${source}: ${detail}`);
  }
  const p = value as unknown as HostProfile;
  const fail = (field: string, msg: string): never => {
    throw new ProfileError(`${source}: ${field}: ${msg}`);
  };
  const addresses = new Set<string>();
  p.devices.forEach((d, i) => {
    const canonical = parsePciAddress(d.address);
    if (canonical !== d.address) fail(`devices[${i}].address`, `write the address in canonical lower-case form ${canonical}`);
    if (addresses.has(d.address)) fail(`devices[${i}].address`, `duplicate address ${d.address}`);
    addresses.add(d.address);
  });
  const loaded = new Set(p.loadedDrivers);
  p.devices.forEach((d, i) => {
    if (d.driver !== undefined && !loaded.has(d.driver)) fail(`devices[${i}].driver`, `${d.driver} is not in loadedDrivers`);
    if (d.parent !== undefined && !addresses.has(d.parent)) fail(`devices[${i}].parent`, `no device ${d.parent} in this profile`);
    if (d.physfn !== undefined && !addresses.has(d.physfn)) fail(`devices[${i}].physfn`, `no device ${d.physfn} in this profile`);
    if (d.sriov && d.sriov.numVfs > d.sriov.totalVfs) fail(`devices[${i}].sriov.numVfs`, 'exceeds totalVfs');
    for (const c of d.consumers ?? []) {
      if (!addresses.has(c.slice('consumer:pci:'.length))) fail(`devices[${i}].consumers`, `no device for ${c}`);
    }
    const bars = new Set<number>();
    (d.bars ?? []).forEach((b, j) => {
      if (bars.has(b.index)) fail(`devices[${i}].bars[${j}].index`, `duplicate BAR ${b.index}`);
      bars.add(b.index);
      parseHexBig(b.start, `devices[${i}].bars[${j}].start`);
      if (parseSize(b.size, `devices[${i}].bars[${j}].size`) === 0n) fail(`devices[${i}].bars[${j}].size`, 'must not be 0');
    });
  });
  // A cycle in `parent` would make the sysfs directory nesting infinite.
  const parentOf = new Map(p.devices.map((d) => [d.address, d.parent]));
  for (const d of p.devices) {
    const seen = new Set<string>();
    for (let a: string | undefined = d.address; a !== undefined; a = parentOf.get(a)) {
      if (seen.has(a)) fail(`devices`, `parent cycle through ${a}`);
      seen.add(a);
    }
  }
  const fbs = new Set<string>();
  (p.framebuffers ?? []).forEach((f, i) => {
    if (fbs.has(f.device)) fail(`framebuffers[${i}].device`, `duplicate ${f.device}`);
    fbs.add(f.device);
    if (f.parent !== undefined && !addresses.has(f.parent)) fail(`framebuffers[${i}].parent`, `no device ${f.parent} in this profile`);
    parseHexBig(f.start, `framebuffers[${i}].start`);
    parseSize(f.size, `framebuffers[${i}].size`);
  });
  const vts = new Set<string>();
  (p.vtconsoles ?? []).forEach((v, i) => {
    if (vts.has(v.name)) fail(`vtconsoles[${i}].name`, `duplicate ${v.name}`);
    vts.add(v.name);
  });
  return deepFreeze(p);
}

/** Built-in profiles are cached and shared, so nobody may change one in place. */
function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** Parses YAML text into a validated profile. */
export function parseProfile(text: string, source = 'profile'): HostProfile {
  let value: unknown;
  try {
    value = parseYaml(text, { merge: true });
  } catch (err) {
    throw new ProfileError(`${source}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  return validateProfile(value, source);
}

/** Reads and validates a profile file given by the user. */
export async function loadProfileFile(path: string): Promise<HostProfile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ProfileError(`cannot read profile ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  return parseProfile(text, path);
}

/** The built-in profiles folder, next to this module both in `src/` (vitest) and in `dist/` (build copies it). */
export function builtinProfilesDir(): string {
  return fileURLToPath(new URL('./builtin/', import.meta.url));
}

/** Names of the built-in profiles, sorted. */
export async function listBuiltinProfiles(): Promise<string[]> {
  const entries = await readdir(builtinProfilesDir());
  return entries
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -'.yaml'.length))
    .sort();
}

const cache = new Map<string, Promise<HostProfile>>();

/** Loads a built-in profile by name (e.g. `workstation-efifb`); `NOT_FOUND`-style names throw `InvalidArgumentError`. */
export async function loadBuiltinProfile(name: string): Promise<HostProfile> {
  if (!/^[a-z0-9][a-z0-9.-]*$/.test(name) || name.includes('..')) {
    throw new InvalidArgumentError(`invalid profile name ${JSON.stringify(name)}`);
  }
  let p = cache.get(name);
  if (!p) {
    p = (async () => {
      const names = await listBuiltinProfiles();
      if (!names.includes(name)) {
        throw new ProfileError(`no built-in profile ${JSON.stringify(name)} (known: ${names.join(', ')})`);
      }
      const file = `${builtinProfilesDir()}${name}.yaml`;
      const profile = await loadProfileFile(file);
      if (profile.name !== name) throw new ProfileError(`${file}: name ${profile.name} does not match the file name`);
      return profile;
    })();
    cache.set(name, p);
    p.catch(() => cache.delete(name));
  }
  return p;
}
