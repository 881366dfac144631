import { readFile, readdir } from 'node:fs/promises';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { parse as parseCel } from '@marcbachmann/cel-js';
import { parse as parseYaml } from 'yaml';
import type { ResourceKind } from '../../../src/api/v1alpha1/index.js';
import type { Crd, LocatedCelRule, SchemaNode } from '../../../src/api/v1alpha1/index.js';
import { celRules, compileCrdSchema, loadCrd } from '../../../src/api/v1alpha1/index.js';

/** Reads the CRD shipped in deploy/crds — the very file `kubectl apply` installs. */
export function loadShippedCrd(kind: ResourceKind): Promise<Crd> {
  return loadCrd(kind, (url) => readFile(url, 'utf8'));
}

/** ajv over the CRD's openAPIV3Schema with the CRD defaults applied the way the API server does (src/api/v1alpha1/validate.ts). */
export function schemaValidator(crd: Crd): ValidateFunction {
  return compileCrdSchema(crd, { useDefaults: true });
}

export interface SchemaResult {
  readonly ok: boolean;
  readonly errors: readonly ErrorObject[];
  /** The object after defaulting. */
  readonly value: unknown;
}

export function validateSchema(validate: ValidateFunction, obj: unknown): SchemaResult {
  const value = structuredClone(obj);
  const ok = validate(value);
  return { ok, errors: validate.errors ?? [], value };
}

/** Values at a rule path: `a.b` walks properties, `[]` expands list items, `{}` expands map values. */
export function valuesAt(obj: unknown, path: string): unknown[] {
  if (path === '') return [obj];
  const tokens = path.match(/[^.[\]{}]+|\[\]|\{\}/g) ?? [];
  let current: unknown[] = [obj];
  for (const t of tokens) {
    const next: unknown[] = [];
    for (const v of current) {
      if (t === '[]') {
        if (Array.isArray(v)) next.push(...v);
      } else if (t === '{}') {
        if (v && typeof v === 'object') next.push(...Object.values(v));
      } else if (v && typeof v === 'object' && t in v) {
        next.push((v as Record<string, unknown>)[t]);
      }
    }
    current = next;
  }
  return current;
}

export interface CelViolation {
  readonly path: string;
  readonly rule: string;
  readonly message: string | undefined;
}

/**
 * Evaluates every CEL rule of the schema against an object (and, for transition rules, its old
 * version) with a real CEL evaluator, the way the API server would: each rule runs once per value at
 * its location, with `self` bound to that value and `oldSelf` to the old value at the same place.
 */
export function celViolations(schema: SchemaNode, obj: unknown, old?: unknown): CelViolation[] {
  const out: CelViolation[] = [];
  for (const r of celRules(schema)) {
    const transition = /\boldSelf\b/.test(r.rule);
    if (transition && old === undefined) continue; // transition rules do not run on create
    const news = valuesAt(obj, r.path);
    const olds = transition ? valuesAt(old, r.path) : [];
    if (transition && (r.path.includes('[]') || r.path.includes('{}'))) throw new Error('list transition rules need correlation');
    news.forEach((self) => {
      if (transition && olds.length === 0) return;
      const ok = evalRule(r, { self, oldSelf: olds[0] });
      if (!ok) out.push({ path: r.path, rule: r.rule, message: r.message });
    });
  }
  return out;
}

function evalRule(r: LocatedCelRule, vars: { self: unknown; oldSelf: unknown }): boolean {
  const result: unknown = parseCel(r.rule)(vars);
  if (typeof result !== 'boolean') throw new Error(`rule did not return a bool: ${r.rule}`);
  return result;
}

/** Every sample object under deploy/samples, by file name. */
export async function loadSamples(): Promise<Map<string, unknown>> {
  const dir = new URL('../../../deploy/samples/', import.meta.url);
  const out = new Map<string, unknown>();
  for (const f of (await readdir(dir)).filter((x) => x.endsWith('.yaml')).sort()) {
    out.set(f, parseYaml(await readFile(new URL(f, dir), 'utf8')));
  }
  return out;
}
