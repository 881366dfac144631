/** RFC 7386 merge patch and RFC 6902 JSON patch, as the API server applies them. */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}

export class PatchError extends Error {
  constructor(
    message: string,
    /** 422 for a failed `test` op or an invalid path, as the API server answers. */
    readonly status: number,
  ) {
    super(message);
  }
}

export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  value?: unknown;
  from?: string;
}

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new PatchError(`invalid JSON pointer ${JSON.stringify(pointer)}`, 422);
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function getAt(doc: unknown, tokens: readonly string[]): unknown {
  let cur: unknown = doc;
  for (const t of tokens) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isObject(cur)) cur = cur[t];
    else return undefined;
  }
  return cur;
}

function parentOf(doc: unknown, tokens: readonly string[], path: string): { parent: unknown; last: string } {
  if (tokens.length === 0) throw new PatchError(`cannot operate on the document root: ${path}`, 422);
  const parent = getAt(doc, tokens.slice(0, -1));
  if (!Array.isArray(parent) && !isObject(parent)) throw new PatchError(`path not found: ${path}`, 422);
  return { parent, last: tokens[tokens.length - 1] as string };
}

function addAt(doc: unknown, path: string, value: unknown): void {
  const { parent, last } = parentOf(doc, parsePointer(path), path);
  if (Array.isArray(parent)) {
    const i = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new PatchError(`index out of range: ${path}`, 422);
    parent.splice(i, 0, structuredClone(value));
  } else (parent as Record<string, unknown>)[last] = structuredClone(value);
}

function removeAt(doc: unknown, path: string): unknown {
  const { parent, last } = parentOf(doc, parsePointer(path), path);
  if (Array.isArray(parent)) {
    const i = Number(last);
    if (!Number.isInteger(i) || i < 0 || i >= parent.length) throw new PatchError(`index out of range: ${path}`, 422);
    return parent.splice(i, 1)[0];
  }
  const obj = parent as Record<string, unknown>;
  if (!(last in obj)) throw new PatchError(`path not found: ${path}`, 422);
  const old = obj[last];
  delete obj[last];
  return old;
}

export function applyJsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new PatchError('a JSON patch must be an array of operations', 400);
  const doc = structuredClone(target) as Json;
  for (const raw of ops as JsonPatchOp[]) {
    switch (raw.op) {
      case 'add':
        addAt(doc, raw.path, raw.value);
        break;
      case 'remove':
        removeAt(doc, raw.path);
        break;
      case 'replace':
        removeAt(doc, raw.path);
        addAt(doc, raw.path, raw.value);
        break;
      case 'move': {
        const v = removeAt(doc, raw.from ?? '');
        addAt(doc, raw.path, v);
        break;
      }
      case 'copy':
        addAt(doc, raw.path, getAt(doc, parsePointer(raw.from ?? '')));
        break;
      case 'test':
        if (JSON.stringify(getAt(doc, parsePointer(raw.path))) !== JSON.stringify(raw.value)) {
          throw new PatchError(`test operation failed at ${raw.path}`, 422);
        }
        break;
      default:
        throw new PatchError(`unknown JSON patch op ${JSON.stringify((raw as { op?: unknown }).op)}`, 400);
    }
  }
  return doc;
}
