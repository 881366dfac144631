import { parse as parseYaml } from 'yaml';
import { InvalidArgumentError } from '../../core/errors.js';
import { GPU_PASSTHROUGH, NODE_GPU_PASSTHROUGH, VERSION } from './names.js';
import type { ResourceKind } from './names.js';

/**
 * The CRDs shipped in deploy/crds are the single source of truth for the schema: tests validate sample
 * objects against the `openAPIV3Schema` read from those very files, and the operator compares the
 * CRD installed in the cluster with them at start-up.
 *
 * File access is injected (`ReadText`) so this module stays free of host I/O; the composition root and
 * the tests pass a `node:fs` reader.
 */

export type ReadText = (url: URL) => Promise<string>;

export interface CelRule {
  readonly rule: string;
  readonly message?: string;
  readonly reason?: string;
  readonly fieldPath?: string;
}

/** A JSON-schema node as the CRD writes it (OpenAPI v3 subset plus `x-kubernetes-*`). */
export interface SchemaNode {
  type?: string;
  description?: string;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  additionalProperties?: SchemaNode | boolean;
  required?: string[];
  default?: unknown;
  'x-kubernetes-validations'?: CelRule[];
  [keyword: string]: unknown;
}

export interface CrdVersion {
  name: string;
  served: boolean;
  storage: boolean;
  subresources?: { status?: object };
  additionalPrinterColumns?: { name: string; type: string; jsonPath: string; priority?: number }[];
  schema: { openAPIV3Schema: SchemaNode };
}

export interface Crd {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string };
  spec: {
    group: string;
    scope: 'Cluster' | 'Namespaced';
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames?: string[]; categories?: string[] };
    versions: CrdVersion[];
  };
}

/** Where the CRD of `kind` is shipped; the same relative path works from src/api/v1alpha1 and dist/api/v1alpha1. */
export function crdFileUrl(kind: ResourceKind): URL {
  return new URL(`../../../deploy/crds/${kind.group}_${kind.plural}.yaml`, import.meta.url);
}

export const SHIPPED_KINDS: readonly ResourceKind[] = [GPU_PASSTHROUGH, NODE_GPU_PASSTHROUGH];

export function parseCrd(text: string): Crd {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new InvalidArgumentError('CRD is not valid YAML', { cause: err });
  }
  const crd = doc as Partial<Crd> | null;
  if (
    crd === null ||
    typeof crd !== 'object' ||
    crd.apiVersion !== 'apiextensions.k8s.io/v1' ||
    crd.kind !== 'CustomResourceDefinition' ||
    typeof crd.spec?.group !== 'string' ||
    !Array.isArray(crd.spec.versions) ||
    crd.spec.versions.some((v) => typeof v?.schema?.openAPIV3Schema !== 'object')
  ) {
    throw new InvalidArgumentError('not an apiextensions.k8s.io/v1 CustomResourceDefinition with schemas');
  }
  return crd as Crd;
}

export async function loadCrd(kind: ResourceKind, readText: ReadText): Promise<Crd> {
  return parseCrd(await readText(crdFileUrl(kind)));
}

export function crdVersion(crd: Crd, version: string = VERSION): CrdVersion {
  const v = crd.spec.versions.find((x) => x.name === version);
  if (!v) throw new InvalidArgumentError(`CRD ${crd.metadata.name} has no version ${version}`);
  return v;
}

export function openApiSchema(crd: Crd, version: string = VERSION): SchemaNode {
  return crdVersion(crd, version).schema.openAPIV3Schema;
}

export interface LocatedCelRule extends CelRule {
  /** Schema location in object terms: `spec.gpus.classes`, `spec.nodeSelector.matchExpressions[]`. */
  readonly path: string;
}

/** Every `x-kubernetes-validations` rule in the schema with where it sits. */
export function celRules(schema: SchemaNode, path = ''): LocatedCelRule[] {
  const out: LocatedCelRule[] = [];
  for (const r of schema['x-kubernetes-validations'] ?? []) out.push({ ...r, path });
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    out.push(...celRules(child, path === '' ? name : `${path}.${name}`));
  }
  if (schema.items) out.push(...celRules(schema.items, `${path}[]`));
  if (typeof schema.additionalProperties === 'object') out.push(...celRules(schema.additionalProperties, `${path}{}`));
  return out;
}

export type CrdCheck = { readonly ok: true } | { readonly ok: false; readonly problems: readonly string[] };

/**
 * Whether the CRD installed in the cluster can serve what this build writes: same group/kind/plural,
 * cluster scope, our version served with a status subresource, and every property path of our schema
 * present (an older CRD would silently prune fields we write). Extra fields in the installed CRD are
 * fine — a newer CRD must not stop an older operator.
 */
export function checkInstalledCrd(installed: unknown, shipped: Crd, version: string = VERSION): CrdCheck {
  const problems: string[] = [];
  const crd = installed as Partial<Crd> | null | undefined;
  if (!crd || typeof crd !== 'object' || !crd.spec) return { ok: false, problems: ['CRD not installed'] };
  const { spec } = crd;
  if (spec.group !== shipped.spec.group) problems.push(`group is ${String(spec.group)}`);
  if (spec.names?.kind !== shipped.spec.names.kind) problems.push(`kind is ${String(spec.names?.kind)}`);
  if (spec.names?.plural !== shipped.spec.names.plural) problems.push(`plural is ${String(spec.names?.plural)}`);
  if (spec.scope !== shipped.spec.scope) problems.push(`scope is ${String(spec.scope)}`);
  const v = Array.isArray(spec.versions) ? spec.versions.find((x) => x?.name === version) : undefined;
  if (!v) {
    problems.push(`version ${version} missing`);
  } else {
    if (!v.served) problems.push(`version ${version} not served`);
    if (!v.subresources?.status) problems.push('status subresource missing');
    const have = new Set(propertyPaths(v.schema?.openAPIV3Schema ?? {}));
    for (const p of propertyPaths(openApiSchema(shipped, version))) {
      if (!have.has(p)) problems.push(`schema lacks ${p}`);
    }
  }
  return problems.length === 0 ? { ok: true } : { ok: false, problems };
}

function propertyPaths(schema: SchemaNode, path = ''): string[] {
  const out: string[] = [];
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    const p = path === '' ? name : `${path}.${name}`;
    out.push(p, ...propertyPaths(child, p));
  }
  if (schema.items) out.push(...propertyPaths(schema.items, `${path}[]`));
  return out;
}
