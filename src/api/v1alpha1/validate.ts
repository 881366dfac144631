import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { InvalidArgumentError } from '../../core/errors.js';
import type { Crd } from './crd.js';
import { openApiSchema } from './crd.js';
import type { ResourceKind } from './names.js';
import { API_VERSION, GPU_PASSTHROUGH, NODE_GPU_PASSTHROUGH } from './names.js';
import { readShippedCrd } from './shipped-crds.js';
import type { GpuPassthrough, NodeGpuPassthrough } from './types.js';

/**
 * Validators for objects read from the API server, compiled with ajv from the `openAPIV3Schema` of the
 * very CRDs in deploy/crds (read once, on first use). They check what a plain JSON-schema validator can:
 * types, `required`, `pattern`, `enum`, `maxItems`, `maxLength`, formats. The CRD's CEL rules
 * (`x-kubernetes-validations`) are the API server's job; test/peers/control-plane/control-plane.test.ts has a
 * real kube-apiserver evaluate them. Beyond the schema (which only says `metadata: object`) an object
 * needs a non-empty `metadata.name`, string `metadata.labels`, and `kind`/`apiVersion` that are either
 * absent (some informer caches strip them from list items) or ours.
 *
 * Problems read `<path>: <what was expected>`, the path in object terms: `spec.gpus[0].policy: is required`.
 */

/** An object from the API server that does not fit its CRD schema; `problems` lists every mismatch. */
export class InvalidObjectError extends InvalidArgumentError {
  constructor(
    readonly kind: string,
    readonly objectName: string | undefined,
    readonly problems: readonly string[],
  ) {
    super(`${kind}${objectName ? ` ${objectName}` : ''} does not match its CRD schema: ${problems.join('; ')}`);
  }
}

/**
 * ajv over a CRD version's openAPIV3Schema. `strict: false` makes ajv ignore the `x-kubernetes-*`
 * keywords; the Kubernetes formats used by our CRDs (int32, int64, date-time) are defined here because
 * ajv has none built in. `useDefaults` applies the CRD defaults the way the API server does (tests use
 * it to see defaulting; the runtime validators leave objects as read).
 */
export function compileCrdSchema(crd: Crd, opts: { readonly useDefaults?: boolean } = {}): ValidateFunction {
  const ajv = new Ajv({ strict: false, allErrors: true, useDefaults: opts.useDefaults ?? false });
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isInteger(n) });
  ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
  return ajv.compile(openApiSchema(crd) as object);
}

const compiled = new Map<string, ValidateFunction>();

function validatorOf(kind: ResourceKind): ValidateFunction {
  let v = compiled.get(kind.kind);
  if (!v) {
    v = compileCrdSchema(readShippedCrd(kind));
    compiled.set(kind.kind, v);
  }
  return v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `/spec/gpus/0/policy` → `spec.gpus[0].policy`. */
function objectPath(pointer: string, child?: string): string {
  const tokens = pointer.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) tokens.push(child);
  let out = '';
  for (const t of tokens) out += /^\d+$/.test(t) ? `[${t}]` : out === '' ? t : `.${t}`;
  return out === '' ? '(object)' : out;
}

function describe(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `${objectPath(e.instancePath, String(p['missingProperty']))}: is required`;
    case 'enum':
      return `${objectPath(e.instancePath)}: must be one of ${(p['allowedValues'] as unknown[]).map(String).join(', ')}`;
    default:
      return `${objectPath(e.instancePath)}: ${e.message ?? 'is invalid'}`;
  }
}

function headerProblems(kind: ResourceKind, v: Record<string, unknown>): string[] {
  const out: string[] = [];
  const meta = v['metadata'];
  if (!isRecord(meta)) return ['metadata: must be an object'];
  if (typeof meta['name'] !== 'string' || meta['name'] === '') out.push('metadata.name: must be a non-empty string');
  const labels = meta['labels'];
  if (labels !== undefined && !(isRecord(labels) && Object.values(labels).every((x) => typeof x === 'string'))) {
    out.push('metadata.labels: must map strings to strings');
  }
  if (v['kind'] !== undefined && v['kind'] !== kind.kind) out.push(`kind: must be ${kind.kind}`);
  if (v['apiVersion'] !== undefined && v['apiVersion'] !== API_VERSION) out.push(`apiVersion: must be ${API_VERSION}`);
  return out;
}

/** Every way `v` misses the shipped schema of `kind`; empty when it fits. */
export function schemaProblems(kind: ResourceKind, v: unknown): string[] {
  if (!isRecord(v)) return ['(object): must be an object'];
  const out = headerProblems(kind, v);
  const validate = validatorOf(kind);
  if (!validate(v)) out.push(...(validate.errors ?? []).map(describe));
  return out;
}

function fits(kind: ResourceKind, v: unknown): boolean {
  return isRecord(v) && headerProblems(kind, v).length === 0 && validatorOf(kind)(v);
}

function parse<T>(kind: ResourceKind, v: unknown): T {
  const problems = schemaProblems(kind, v);
  if (problems.length > 0) {
    const name = isRecord(v) && isRecord(v['metadata']) && typeof v['metadata']['name'] === 'string' ? v['metadata']['name'] : undefined;
    throw new InvalidObjectError(kind.kind, name, problems);
  }
  return v as T;
}

export function isGpuPassthrough(v: unknown): v is GpuPassthrough {
  return fits(GPU_PASSTHROUGH, v);
}

export function isNodeGpuPassthrough(v: unknown): v is NodeGpuPassthrough {
  return fits(NODE_GPU_PASSTHROUGH, v);
}

/** `v` typed as a GpuPassthrough; throws InvalidObjectError listing every problem. */
export function parseGpuPassthrough(v: unknown): GpuPassthrough {
  return parse<GpuPassthrough>(GPU_PASSTHROUGH, v);
}

/** `v` typed as a NodeGpuPassthrough; throws InvalidObjectError listing every problem. */
export function parseNodeGpuPassthrough(v: unknown): NodeGpuPassthrough {
  return parse<NodeGpuPassthrough>(NODE_GPU_PASSTHROUGH, v);
}
