import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { HOST_PROGRAMS } from '../../../src/sysfs/programs.js';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './support/tools.js';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

interface Instruction {
  op: string;
  args: string;
}

/** Parses a Dockerfile into instructions (line continuations joined, comments dropped). */
function instructions(text: string): Instruction[] {
  const joined = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => {
      const [op = '', ...rest] = l.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

interface Stage {
  image: string;
  name: string | undefined;
  body: Instruction[];
}

function stages(list: readonly Instruction[]): Stage[] {
  const out: Stage[] = [];
  for (const i of list) {
    if (i.op === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(i.args);
      out.push({ image: m?.[1] ?? i.args, name: m?.[2], body: [] });
    } else {
      out.at(-1)?.body.push(i);
    }
  }
  return out;
}

/** The lint rules for our image recipe; returns problems so a broken Dockerfile names them all. */
function lint(text: string): string[] {
  const list = instructions(text);
  const problems: string[] = [];
  const st = stages(list);
  if (st.length < 2) problems.push('not multi-stage');
  const names = new Set<string>();
  for (const s of st) {
    if (!s.name) problems.push(`stage ${s.image} has no name`);
    else names.add(s.name);
    const isStageRef = names.has(s.image) && s.image !== s.name;
    if (!isStageRef) {
      if (!/:[^/]+$/.test(s.image) && !s.image.includes('@sha256:')) problems.push(`${s.image}: no tag`);
      if (/:latest$/.test(s.image)) problems.push(`${s.image}: latest tag`);
    }
  }
  for (const i of list) {
    if (i.op === 'ADD' && /https?:\/\//.test(i.args)) problems.push('ADD from a URL');
    if (i.op === 'RUN' && /\b(curl|wget)\b/.test(i.args)) problems.push('downloads outside the package manager');
    if (i.op === 'RUN' && /apt-get install/.test(i.args) && !/--no-install-recommends/.test(i.args)) problems.push('apt-get install without --no-install-recommends');
    if (i.op === 'RUN' && /apt-get install/.test(i.args) && !/rm -rf \/var\/lib\/apt\/lists/.test(i.args)) problems.push('apt lists left in the layer');
    if (i.op === 'COPY' && /--from=(\S+)/.test(i.args)) {
      const from = /--from=(\S+)/.exec(i.args)?.[1] ?? '';
      if (!names.has(from)) problems.push(`COPY --from=${from}: no such earlier stage`);
    }
  }
  const final = st.at(-1);
  const user = final?.body.filter((i) => i.op === 'USER').at(-1)?.args;
  if (!user || /^(0|root)(:|$)/.test(user)) problems.push('final stage runs as root');
  const entry = final?.body.find((i) => i.op === 'ENTRYPOINT')?.args ?? '';
  if (!entry.startsWith('[')) problems.push('ENTRYPOINT not in exec form');
  return problems;
}

describe('Dockerfile', () => {
  const text = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
  const st = stages(instructions(text));

  it('passes the lint rules', () => {
    expect(lint(text)).toEqual([]);
  });

  it('builds with full Node 20 and runs on a slim Node 20 image', () => {
    expect(st.map((s) => s.name)).toEqual(['build', 'runtime']);
    expect(st[0]?.image).toMatch(/^node:20\.[0-9.]+-bookworm$/);
    expect(st[1]?.image).toMatch(/^node:20\.[0-9.]+-bookworm-slim$/);
  });

  it('takes pci.ids from Debian hwdata and checks it is there', () => {
    const run = st[1]?.body.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n') ?? '';
    expect(run).toMatch(/apt-get install[^\n]*\bhwdata\b/);
    expect(run).toContain('test -s /usr/share/misc/pci.ids');
  });

  it('installs and checks every program the code executes (src/sysfs/programs.ts)', () => {
    const run = st[1]?.body.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n') ?? '';
    const installed = new Set((/apt-get install\s+([^&]*)/.exec(run)?.[1] ?? '').split(/\s+/).filter((w) => w && !w.startsWith('-')));
    for (const [program, { package: pkg }] of Object.entries(HOST_PROGRAMS)) {
      if (program !== 'node') expect(installed, `${program} needs the Debian package ${pkg}`).toContain(pkg);
      expect(run, `the image build checks ${program} is on PATH`).toMatch(new RegExp(`command -v ${program}\\b`));
    }
  });

  it('lists every file that starts a process in src/sysfs/programs.ts', () => {
    const spawning = sourceFiles(join(REPO_ROOT, 'src'))
      .filter((f) => !f.endsWith('.test.ts') && !f.includes('/src/bench/'))
      // The loopback control plane (etcd + kube-apiserver) is test and benchmark support; the image never runs it.
      .filter((f) => !f.endsWith('/src/testing/control-plane.ts'))
      .filter((f) => /from '(node:)?child_process'/.test(readFileSync(f, 'utf8')))
      .map((f) => relative(REPO_ROOT, f))
      .sort();
    expect(spawning).toEqual([...new Set(Object.values(HOST_PROGRAMS).map((p) => p.usedIn))].sort());
  });

  it('ships the compiled CLI as the entrypoint and the vfio-handoff command', () => {
    const body = st[1]?.body ?? [];
    expect(body.find((i) => i.op === 'ENTRYPOINT')?.args).toBe('["node", "/app/dist/cli/main.js"]');
    expect(body.some((i) => i.op === 'COPY' && i.args.includes('--from=build /src/dist'))).toBe(true);
    expect(body.some((i) => i.op === 'RUN' && i.args.includes('/usr/local/bin/vfio-handoff'))).toBe(true);
    // Production dependencies only.
    expect(st[0]?.body.some((i) => i.op === 'RUN' && i.args.includes('npm prune --omit=dev'))).toBe(true);
  });

  it('keeps the build context free of local state', () => {
    const ignore = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const p of ['node_modules', '.git', 'dist', '.cache']) expect(ignore).toContain(p);
    // ...but not what the build stage copies.
    for (const p of ['src', 'scripts', 'proto', 'package.json']) expect(ignore).not.toContain(p);
  });

  it.each([
    ['FROM node:20 AS build\nFROM node:latest AS runtime\nUSER 1000\nENTRYPOINT ["node"]\n', /latest tag/],
    ['FROM node AS build\nUSER 1000\nENTRYPOINT ["node"]\n', /not multi-stage|no tag/],
    ['FROM node:20 AS a\nFROM node:20-slim AS b\nENTRYPOINT ["node"]\n', /runs as root/],
    ['FROM node:20 AS a\nFROM node:20-slim AS b\nCOPY --from=c /x /x\nUSER 1\nENTRYPOINT node x\n', /no such earlier stage/],
    ['FROM node:20 AS a\nRUN curl -o x https://e.x\nFROM node:20-slim AS b\nUSER 1\nENTRYPOINT ["n"]\n', /downloads/],
  ])('lint catches %j', (bad, problem) => {
    expect(lint(bad).join('\n')).toMatch(problem);
  });
});
