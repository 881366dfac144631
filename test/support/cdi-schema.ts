import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';

/**
 * The CDI spec's JSON schema (cncf-tags/container-device-interface v1.1.0, vendored in
 * test/fixtures/cdi-schema, see SOURCE.md) plus SPEC.md's name rules, which the schema leaves out.
 * Returns the problems found; `[]` = valid.
 */
const dir = fileURLToPath(new URL('../fixtures/cdi-schema/', import.meta.url));
const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addSchema(JSON.parse(readFileSync(`${dir}defs.json`, 'utf8')), 'defs.json');
const validate = ajv.compile(JSON.parse(readFileSync(`${dir}schema.json`, 'utf8')));

// SPEC.md: kind = DNS-subdomain vendor + "/" + class (alphanumerics, -, _, . between); device names begin
// and end alphanumeric with -, _, ., : between (0.5.0+ allows a leading digit).
const VENDOR = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;
const CLASS = /^[a-zA-Z0-9]([a-zA-Z0-9_.-]*[a-zA-Z0-9])?$/;
const DEVICE = /^[a-zA-Z0-9]([a-zA-Z0-9_.:-]*[a-zA-Z0-9])?$/;
const SEMVER = /^\d+\.\d+\.\d+$/;

export function cdiSpecProblems(doc: unknown): string[] {
  const problems: string[] = [];
  if (!validate(doc)) problems.push(...(validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`));
  const spec = doc as { cdiVersion?: unknown; kind?: unknown; devices?: { name?: unknown; containerEdits?: { deviceNodes?: { path?: unknown; permissions?: unknown }[] } }[] };
  if (typeof spec?.cdiVersion === 'string' && !SEMVER.test(spec.cdiVersion)) problems.push(`cdiVersion ${spec.cdiVersion} is not semver`);
  if (typeof spec?.kind === 'string') {
    const [vendor, cls, extra] = spec.kind.split('/');
    if (extra !== undefined || !vendor || !cls || !VENDOR.test(vendor) || !CLASS.test(cls)) problems.push(`kind ${spec.kind} is not vendor/class`);
  }
  if (Array.isArray(spec?.devices)) {
    if (spec.devices.length === 0) problems.push('no devices (SPEC.md: at least one)');
    const names = new Set<unknown>();
    for (const d of spec.devices) {
      if (typeof d.name !== 'string' || !DEVICE.test(d.name) || d.name.length > 63) problems.push(`device name ${JSON.stringify(d.name)} breaks SPEC.md`);
      if (names.has(d.name)) problems.push(`device ${String(d.name)} twice`);
      names.add(d.name);
      for (const n of d.containerEdits?.deviceNodes ?? []) {
        if (typeof n.path !== 'string' || !n.path.startsWith('/')) problems.push(`device node path ${JSON.stringify(n.path)} is not absolute`);
        if (n.permissions !== undefined && !/^[rwm]+$/.test(String(n.permissions))) problems.push(`permissions ${String(n.permissions)}`);
      }
    }
  }
  return problems;
}
