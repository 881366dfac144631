import { describe, expect, it, beforeAll } from 'vitest';
import type { ValidateFunction } from 'ajv';
import { GPU_PASSTHROUGH, NODE_GPU_PASSTHROUGH, isGpuPassthrough, isNodeGpuPassthrough } from '../../../src/api/v1alpha1/index.js';
import type { Crd, SchemaNode } from '../../../src/api/v1alpha1/index.js';
import { celRules, checkInstalledCrd, crdVersion, openApiSchema, parseCrd } from '../../../src/api/v1alpha1/index.js';
import { celViolations, loadSamples, loadShippedCrd, schemaValidator, validateSchema } from './support.js';
import { KUBELET_RESOURCE_NAME_CASES } from '../../support/resource-name-cases.js';

let gptCrd: Crd;
let ngpCrd: Crd;
let gptSchema: ValidateFunction;
let ngpSchema: ValidateFunction;

beforeAll(async () => {
  gptCrd = await loadShippedCrd(GPU_PASSTHROUGH);
  ngpCrd = await loadShippedCrd(NODE_GPU_PASSTHROUGH);
  gptSchema = schemaValidator(gptCrd);
  ngpSchema = schemaValidator(ngpCrd);
});

function gpt(spec: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { apiVersion: 'handoff.dev/v1alpha1', kind: 'GpuPassthrough', metadata: { name: 'p' }, spec, ...extra };
}

function ngp(spec: Record<string, unknown>, status?: Record<string, unknown>): Record<string, unknown> {
  const o: Record<string, unknown> = { apiVersion: 'handoff.dev/v1alpha1', kind: 'NodeGpuPassthrough', metadata: { name: 'node-a' }, spec };
  if (status) o['status'] = status;
  return o;
}

function walk(schema: SchemaNode, path: string, visit: (s: SchemaNode, path: string) => void): void {
  visit(schema, path);
  for (const [k, v] of Object.entries(schema.properties ?? {})) walk(v, `${path}.${k}`, visit);
  if (schema.items) walk(schema.items, `${path}[]`, visit);
  if (typeof schema.additionalProperties === 'object') walk(schema.additionalProperties, `${path}{}`, visit);
}

describe('shipped CRDs', () => {
  it.each([
    ['gpupassthroughs', () => gptCrd, 'GpuPassthrough', 'gpt'],
    ['nodegpupassthroughs', () => ngpCrd, 'NodeGpuPassthrough', 'ngp'],
  ])('%s: names, scope, status subresource, printer columns', (plural, crd, kind, short) => {
    const c = crd();
    expect(c.metadata.name).toBe(`${plural}.handoff.dev`);
    expect(c.spec.scope).toBe('Cluster');
    expect(c.spec.names).toMatchObject({ kind, plural, shortNames: [short], categories: expect.arrayContaining(['handoff']) });
    const v = crdVersion(c);
    expect(v).toMatchObject({ served: true, storage: true, subresources: { status: {} } });
    expect(v.additionalPrinterColumns?.map((p) => p.name)).toEqual(expect.arrayContaining(['Ready', 'Age']));
  });

  it('GpuPassthrough printer columns show nodes and GPU counts', () => {
    expect(crdVersion(gptCrd).additionalPrinterColumns?.map((p) => p.name)).toEqual(
      expect.arrayContaining(['Nodes', 'Nodes Ready', 'GPUs', 'GPUs Ready', 'Failed']),
    );
  });

  it.each([['gpupassthroughs'], ['nodegpupassthroughs']])('%s: every field has a description (kubectl explain)', (name) => {
    const crd = name === 'gpupassthroughs' ? gptCrd : ngpCrd;
    const missing: string[] = [];
    walk(openApiSchema(crd), '', (s, path) => {
      if (path.endsWith('.metadata')) return; // the API server supplies ObjectMeta's docs
      if (typeof s.description !== 'string' || s.description.length < 3) missing.push(path || '<root>');
    });
    expect(missing).toEqual([]);
  });

  it.each([['gpupassthroughs'], ['nodegpupassthroughs']])('%s: structural — every node has a type, every list a maxItems, every string a bound', (name) => {
    const crd = name === 'gpupassthroughs' ? gptCrd : ngpCrd;
    const problems: string[] = [];
    walk(openApiSchema(crd), '', (s, path) => {
      if (typeof s.type !== 'string') problems.push(`${path}: no type`);
      if (s.type === 'array' && typeof s['maxItems'] !== 'number') problems.push(`${path}: unbounded list`);
      // CEL cost estimation needs bounded strings wherever a rule may read them.
      const typeMeta = path === '.apiVersion' || path === '.kind'; // set by the API server, never read by a rule
      if (s.type === 'string' && !typeMeta && s['enum'] === undefined && s['format'] === undefined && typeof s['maxLength'] !== 'number') {
        problems.push(`${path}: unbounded string`);
      }
    });
    expect(problems).toEqual([]);
  });

  it('every CEL rule carries a message', () => {
    for (const crd of [gptCrd, ngpCrd]) {
      for (const r of celRules(openApiSchema(crd))) expect(r.message, r.rule).toBeTruthy();
    }
  });

  it('parseCrd rejects what is not a CRD', () => {
    expect(() => parseCrd('kind: ConfigMap\n')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => parseCrd('{ not yaml')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('checkInstalledCrd accepts the shipped CRD and names what an old one lacks', () => {
    expect(checkInstalledCrd(gptCrd, gptCrd)).toEqual({ ok: true });
    expect(checkInstalledCrd(undefined, gptCrd)).toEqual({ ok: false, problems: ['CRD not installed'] });
    const old = structuredClone(gptCrd);
    const v = crdVersion(old);
    delete v.schema.openAPIV3Schema.properties!['status']!.properties!['failingNodes'];
    delete v.subresources;
    const res = checkInstalledCrd(old, gptCrd);
    expect(res.ok).toBe(false);
    expect(!res.ok && res.problems).toEqual(expect.arrayContaining(['status subresource missing', 'schema lacks status.failingNodes']));
  });
});

describe('samples in deploy/samples', () => {
  it('every sample validates against its CRD schema and CEL rules, and passes the runtime guard', async () => {
    const samples = await loadSamples();
    expect(samples.size).toBeGreaterThanOrEqual(3);
    for (const [file, obj] of samples) {
      const kind = (obj as { kind: string }).kind;
      const [validate, crd, guard] =
        kind === 'GpuPassthrough' ? [gptSchema, gptCrd, isGpuPassthrough] : [ngpSchema, ngpCrd, isNodeGpuPassthrough];
      const res = validateSchema(validate, obj);
      expect(res.errors, file).toEqual([]);
      expect(celViolations(openApiSchema(crd), res.value), file).toEqual([]);
      expect(guard(res.value), file).toBe(true);
    }
  });
});

describe('GpuPassthrough schema (ajv against the shipped openAPIV3Schema)', () => {
  it('applies the CRD defaults, nested ones included', () => {
    const res = validateSchema(gptSchema, gpt({}));
    expect(res.ok).toBe(true);
    expect((res.value as { spec: unknown }).spec).toEqual({ allowBootGpu: false, paused: false, kubevirt: { register: true }, priority: 0 });
  });

  it.each([
    ['vendor:device upper-case', { gpus: { vendorDevices: ['10DE:2331'] } }],
    ['vendor:device without colon', { gpus: { vendorDevices: ['10de2331'] } }],
    ['class without 0x', { gpus: { classes: ['0302'] } }],
    ['class with 5 digits', { gpus: { classes: ['0x03020'] } }],
    ['address without domain', { gpus: { addresses: ['41:00.0'] } }],
    ['address with device 0x20', { gpus: { addresses: ['0000:41:20.0'] } }],
    ['address with function 8', { gpus: { addresses: ['0000:41:00.8'] } }],
    ['address path trick', { gpus: { addresses: ['../../0000:41:00.0'] } }],
    ['resourceName without domain', { resourceName: 'h100' }],
    ['resourceName with two slashes', { resourceName: 'a.com/b/c' }],
    ['unknown operator', { nodeSelector: { matchExpressions: [{ key: 'a', operator: 'Gt', values: ['1'] }] } }],
    ['label value too long', { nodeSelector: { matchLabels: { a: 'x'.repeat(64) } } }],
    ['priority out of range', { priority: 5000 }],
    ['priority not an integer', { priority: 1.5 }],
    ['paused as string', { paused: 'yes' }],
    ['too many addresses', { gpus: { addresses: Array.from({ length: 65 }, (_, i) => `0000:${i.toString(16).padStart(2, '0')}:00.0`) } }],
  ])('rejects %s', (_name, spec) => {
    expect(validateSchema(gptSchema, gpt(spec)).ok).toBe(false);
  });

  it.each([
    ['class with prog-if', { gpus: { classes: ['0x030000'] } }],
    ['address with domain 0001', { gpus: { addresses: ['0001:c1:1f.7'] } }],
    ['every selector kind', { gpus: { vendorDevices: ['10de:2331'], classes: ['0x0302'], addresses: ['0000:41:00.0'] } }],
    ['negative priority', { priority: -10 }],
    ['label selector with prefixed keys', { nodeSelector: { matchExpressions: [{ key: 'node.kubernetes.io/instance-type', operator: 'In', values: ['g5'] }] } }],
  ])('accepts %s', (_name, spec) => {
    const res = validateSchema(gptSchema, gpt(spec));
    expect(res.errors).toEqual([]);
  });

  it('rejects a status with more than 20 failing nodes', () => {
    const failingNodes = Array.from({ length: 21 }, (_, i) => ({ node: `n${i}`, reason: 'GpuFailed' }));
    expect(validateSchema(gptSchema, gpt({}, { status: { failingNodes } })).ok).toBe(false);
    expect(validateSchema(gptSchema, gpt({}, { status: { failingNodes: failingNodes.slice(0, 20) } })).ok).toBe(true);
  });

  it('rejects a condition with a bad status or time', () => {
    const cond = { type: 'Ready', status: 'Yes', reason: 'X', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' };
    expect(validateSchema(gptSchema, gpt({}, { status: { conditions: [cond] } })).ok).toBe(false);
    const cond2 = { ...cond, status: 'True', lastTransitionTime: 'yesterday' };
    expect(validateSchema(gptSchema, gpt({}, { status: { conditions: [cond2] } })).ok).toBe(false);
  });
});

describe('NodeGpuPassthrough schema', () => {
  it('applies defaults to spec and desired GPUs', () => {
    const res = validateSchema(ngpSchema, ngp({ gpus: [{ address: '0000:41:00.0', policy: 'p' }] }));
    expect(res.errors).toEqual([]);
    expect((res.value as { spec: unknown }).spec).toEqual({ gpus: [{ address: '0000:41:00.0', policy: 'p', allowBootGpu: false }], paused: false });
  });

  it.each([
    ['desired GPU without policy', { gpus: [{ address: '0000:41:00.0' }] }, undefined],
    ['desired GPU with a bad address', { gpus: [{ address: '0000:41:00', policy: 'p' }] }, undefined],
    ['policy name upper-case', { gpus: [{ address: '0000:41:00.0', policy: 'P' }] }, undefined],
    ['unknown phase', {}, { gpus: [{ address: '0000:41:00.0', phase: 'Bound', lastTransitionTime: '2026-01-01T00:00:00Z' }] }],
    ['inventory class of 4 digits', {}, { inventory: [{ address: '0000:41:00.0', vendorId: '10de', deviceId: '2331', class: '0x0302', bootGpu: false }] }],
    ['inventory without bootGpu', {}, { inventory: [{ address: '0000:41:00.0', vendorId: '10de', deviceId: '2331', class: '0x030200' }] }],
    ['negative NUMA node', {}, { inventory: [{ address: '0000:41:00.0', vendorId: '10de', deviceId: '2331', class: '0x030200', bootGpu: false, numaNode: -1 }] }],
    ['unknown vfioPci state', {}, { node: { vfioPci: 'Maybe' } }],
  ])('rejects %s', (_name, spec, status) => {
    expect(validateSchema(ngpSchema, ngp(spec, status)).ok).toBe(false);
  });

  it('accepts an empty resourceName on a desired GPU (the plugin default)', () => {
    expect(validateSchema(ngpSchema, ngp({ gpus: [{ address: '0000:41:00.0', policy: 'p', resourceName: '' }] })).errors).toEqual([]);
  });
});

/**
 * CEL rules: the rule strings are read from the shipped CRDs and evaluated by a real CEL evaluator
 * (@marcbachmann/cel-js). Each case states the intent; the final test makes sure no rule goes untested.
 */
describe('CEL rules of GpuPassthrough', () => {
  const tested = new Set<string>();
  // The API server defaults before it validates, so the rules see the defaulted object.
  const admitted = (o: unknown): unknown => (o === undefined ? undefined : validateSchema(gptSchema, o).value);
  function violations(obj: unknown, old?: unknown): string[] {
    const v = celViolations(openApiSchema(gptCrd), admitted(obj), admitted(old));
    return v.map((x) => x.message ?? x.rule);
  }
  function expectRule(path: string, obj: unknown, violated: boolean, old?: unknown): void {
    const rules = celRules(openApiSchema(gptCrd)).filter((r) => r.path === path);
    expect(rules.length).toBeGreaterThan(0);
    const v = celViolations(openApiSchema(gptCrd), admitted(obj), admitted(old)).filter((x) => x.path === path);
    expect(v.length > 0, JSON.stringify(obj)).toBe(violated);
    for (const r of v) tested.add(r.rule);
    if (!violated) for (const r of rules) if (!/oldSelf/.test(r.rule) || old !== undefined) tested.add(`ok:${r.rule}`);
  }

  it.each([
    ['In without values matches nothing: rejected', { key: 'a', operator: 'In' }, true],
    ['In with an empty list: rejected', { key: 'a', operator: 'In', values: [] }, true],
    ['NotIn without values: rejected', { key: 'a', operator: 'NotIn' }, true],
    ['Exists with values looks like a filter but is not: rejected', { key: 'a', operator: 'Exists', values: ['x'] }, true],
    ['DoesNotExist with values: rejected', { key: 'a', operator: 'DoesNotExist', values: ['x'] }, true],
    ['In with values', { key: 'a', operator: 'In', values: ['x'] }, false],
    ['Exists alone', { key: 'a', operator: 'Exists' }, false],
    ['DoesNotExist with an empty list', { key: 'a', operator: 'DoesNotExist', values: [] }, false],
  ])('matchExpressions: %s', (_n, expr, violated) => {
    expectRule('spec.nodeSelector.matchExpressions[]', gpt({ nodeSelector: { matchExpressions: [expr] } }), violated);
  });

  it.each([
    ['a plain key', { gpu: 'yes' }, false],
    ['a prefixed key', { 'handoff.dev/gpu-pool': 'vm' }, false],
    ['a key with a space never matches a node: rejected', { 'gpu pool': 'vm' }, true],
    ['a key with two slashes: rejected', { 'a/b/c': 'x' }, true],
    ['an upper-case prefix: rejected', { 'Handoff.dev/x': 'x' }, true],
  ])('matchLabels keys: %s', (_n, matchLabels, violated) => {
    expectRule('spec.nodeSelector.matchLabels', gpt({ nodeSelector: { matchLabels } }), violated);
  });

  it.each([
    ['display controllers 0x0300', ['0x0300'], false],
    ['3D controllers with prog-if', ['0x030200'], false],
    ['processing accelerators 0x1200', ['0x1200'], false],
    ['a network class selects no GPU: rejected', ['0x0200'], true],
    ['one bad among good: rejected', ['0x0302', '0x0108'], true],
  ])('classes: %s', (_n, classes, violated) => {
    expectRule('spec.gpus.classes', gpt({ gpus: { classes } }), violated);
  });

  it.each([
    ['a vendor domain', 'example.com/h100', false],
    ['a domain merely containing kubernetes', 'kubernetes.example.com/gpu', false],
    ['kubernetes.io is reserved: rejected', 'kubernetes.io/gpu', true],
    ['subdomains of kubernetes.io are reserved: rejected', 'gpu.kubernetes.io/h100', true],
    ['requests. is quota syntax: rejected', 'requests.example.com/gpu', true],
  ])('resourceName: %s', (_n, resourceName, violated) => {
    expectRule('spec.resourceName', gpt({ resourceName }), violated);
  });

  it.each(KUBELET_RESOURCE_NAME_CASES.filter(([name]) => name !== '').map(([name, valid]) => [name.length > 40 ? `${name.slice(0, 37)}…(${name.length})` : name, name, valid] as const))(
    'resourceName %s: admitted (schema + CEL) exactly when kubelet accepts it (%s)',
    (_label, resourceName, valid) => {
      const policy = validateSchema(gptSchema, gpt({ resourceName }));
      expect(policy.ok && celViolations(openApiSchema(gptCrd), policy.value).length === 0).toBe(valid);
      const node = validateSchema(ngpSchema, ngp({ gpus: [{ address: '0000:41:00.0', policy: 'p', resourceName }] }));
      const nodeAdmitted = node.ok && celViolations(openApiSchema(ngpCrd), node.value).length === 0;
      expect(nodeAdmitted).toBe(valid);
    },
  );

  const someNodes = { matchLabels: { 'kubernetes.io/hostname': 'ws-01' } };
  it.each([
    ['boot GPU with an address and a node selector', { allowBootGpu: true, gpus: { addresses: ['0000:01:00.0'] }, nodeSelector: someNodes }, false],
    ['boot GPU with a class selector', { allowBootGpu: true, gpus: { classes: ['0x0300'] }, nodeSelector: someNodes }, false],
    ['boot GPU by matchExpressions', { allowBootGpu: true, gpus: { vendorDevices: ['1002:744c'] }, nodeSelector: { matchExpressions: [{ key: 'ws', operator: 'Exists' }] } }, false],
    ['no boot GPU, no selectors at all', { allowBootGpu: false }, false],
    ['boot GPU as a side effect of "every GPU": rejected', { allowBootGpu: true, nodeSelector: someNodes }, true],
    ['boot GPU with empty selector lists: rejected', { allowBootGpu: true, gpus: { vendorDevices: [], classes: [] }, nodeSelector: someNodes }, true],
    ['boot GPU on every node of the cluster: rejected', { allowBootGpu: true, gpus: { addresses: ['0000:01:00.0'] } }, true],
    ['boot GPU with an empty node selector: rejected', { allowBootGpu: true, gpus: { addresses: ['0000:01:00.0'] }, nodeSelector: { matchLabels: {} } }, true],
  ])('allowBootGpu: %s', (_n, spec, violated) => {
    expectRule('spec', gpt({ kubevirt: { register: true }, ...spec }), violated);
  });

  it.each([
    ['unchanged name', { resourceName: 'example.com/a' }, { resourceName: 'example.com/a' }, false],
    ['never set', {}, {}, false],
    ['renamed under running VMs: rejected', { resourceName: 'example.com/b' }, { resourceName: 'example.com/a' }, true],
    ['set later: rejected', { resourceName: 'example.com/a' }, {}, true],
    ['unset later: rejected', {}, { resourceName: 'example.com/a' }, true],
  ])('resourceName immutability: %s', (_n, now, before, violated) => {
    const base = { allowBootGpu: false, paused: false };
    expectRule('spec', gpt({ ...base, ...now }), violated, gpt({ ...base, ...before }));
  });

  it('transition rules do not run on create', () => {
    expect(violations(gpt({ resourceName: 'example.com/a', allowBootGpu: false }))).toEqual([]);
  });

  it('every rule of the CRD was exercised both ways', () => {
    const rules = celRules(openApiSchema(gptCrd)).map((r) => r.rule);
    for (const r of rules) {
      expect(tested.has(r), `never violated: ${r}`).toBe(true);
      expect(tested.has(`ok:${r}`), `never satisfied: ${r}`).toBe(true);
    }
  });
});

describe('CEL rules of NodeGpuPassthrough', () => {
  it.each([
    ['Failed with a reason', { phase: 'Failed', reason: 'GroupNotViable' }, false],
    ['Ready without a reason', { phase: 'Ready' }, false],
    ['Failed without a reason says nothing to report: rejected', { phase: 'Failed' }, true],
    ['Failed with an empty reason: rejected', { phase: 'Failed', reason: '' }, true],
  ])('status.gpus: %s', (_n, gpu, violated) => {
    const obj = ngp({}, { gpus: [{ address: '0000:41:00.0', lastTransitionTime: '2026-01-01T00:00:00Z', ...gpu }] });
    const v = celViolations(openApiSchema(ngpCrd), validateSchema(ngpSchema, obj).value);
    expect(v.length > 0).toBe(violated);
  });

  it('has exactly the rules tested above', () => {
    expect(celRules(openApiSchema(ngpCrd)).map((r) => r.path).sort()).toEqual(['spec.gpus[].resourceName', 'status.gpus[]']);
  });
});
