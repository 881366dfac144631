/**
 * Label and field selectors as the API server parses them from the query string
 * (`a=b,c!=d,e,!f,g in (x,y),h notin (z)`). Invalid syntax throws, which the server answers with 400.
 */
export type LabelRequirement =
  | { key: string; op: 'eq' | 'neq'; value: string }
  | { key: string; op: 'in' | 'notin'; values: readonly string[] }
  | { key: string; op: 'exists' | 'notexists' };

export function parseLabelSelector(selector: string | null | undefined): LabelRequirement[] {
  if (!selector) return [];
  const parts: string[] = [];
  // Split on commas that are not inside parentheses.
  let depth = 0;
  let cur = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts.map((raw) => {
    const p = raw.trim();
    const set = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p);
    if (set) {
      const values = (set[3] ?? '').split(',').map((v) => v.trim()).filter((v) => v !== '');
      return { key: set[1] as string, op: set[2] as 'in' | 'notin', values };
    }
    const neq = /^([^\s!=]+)\s*!=\s*(\S*)$/.exec(p);
    if (neq) return { key: neq[1] as string, op: 'neq', value: neq[2] as string };
    const eq = /^([^\s!=]+)\s*==?\s*(\S*)$/.exec(p);
    if (eq) return { key: eq[1] as string, op: 'eq', value: eq[2] as string };
    const notExists = /^!([^\s!=]+)$/.exec(p);
    if (notExists) return { key: notExists[1] as string, op: 'notexists' };
    if (/^[^\s!=(),]+$/.test(p)) return { key: p, op: 'exists' };
    throw new Error(`unable to parse requirement: ${JSON.stringify(p)}`);
  });
}

export function matchesLabels(reqs: readonly LabelRequirement[], labels: Readonly<Record<string, string>> | undefined): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const v = l[r.key];
    switch (r.op) {
      case 'eq':
        return v === r.value;
      case 'neq':
        return v !== r.value;
      case 'in':
        return v !== undefined && r.values.includes(v);
      case 'notin':
        return v === undefined || !r.values.includes(v);
      case 'exists':
        return v !== undefined;
      case 'notexists':
        return v === undefined;
    }
  });
}

/** Field selectors: only `metadata.name` and `metadata.namespace` with `=`, `==`, `!=`, which is all we use. */
export type FieldRequirement = { path: 'metadata.name' | 'metadata.namespace'; op: 'eq' | 'neq'; value: string };

export function parseFieldSelector(selector: string | null | undefined): FieldRequirement[] {
  if (!selector) return [];
  return selector.split(',').map((raw) => {
    const m = /^\s*(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*(\S*)\s*$/.exec(raw);
    if (!m) throw new Error(`field selector not supported by the fake: ${JSON.stringify(raw)}`);
    return { path: m[1] as FieldRequirement['path'], op: m[2] === '!=' ? 'neq' : 'eq', value: m[3] as string };
  });
}

export function matchesFields(reqs: readonly FieldRequirement[], meta: { name?: string; namespace?: string }): boolean {
  return reqs.every((r) => {
    const v = (r.path === 'metadata.name' ? meta.name : meta.namespace) ?? '';
    return r.op === 'eq' ? v === r.value : v !== r.value;
  });
}
