import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { REPO_ROOT, ensureHelm } from './support/tools.js';
import type { K8sObject } from './support/validate.js';
import { parseObjects, podSpec, validateObjects } from './support/validate.js';

const CHART = join(REPO_ROOT, 'helm/vfio-handoff');
const helm = ensureHelm();
const work = mkdtempSync(join(tmpdir(), 'vfio-handoff-helm-cdi-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
function template(values: unknown): { ok: boolean; objects: K8sObject[]; stderr: string } {
  const f = join(work, `values-${n++}.yaml`);
  writeFileSync(f, stringify(values));
  const r = spawnSync(helm.path ?? 'helm', ['template', 'vh', CHART, '--namespace', 'gpu-system', '-f', f], { encoding: 'utf8' });
  return { ok: r.status === 0, objects: r.status === 0 ? parseObjects(r.stdout) : [], stderr: r.stderr };
}

type Container = { name: string; args?: string[]; volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[] };
function containers(objects: K8sObject[], suffix: string): Container[] {
  return (podSpec(objects.find((o) => o.kind === 'DaemonSet' && o.metadata.name.endsWith(suffix)) as K8sObject)?.containers ?? []) as unknown as Container[];
}
const cdiVolume = (objects: K8sObject[], suffix: string) =>
  podSpec(objects.find((o) => o.kind === 'DaemonSet' && o.metadata.name.endsWith(suffix)) as K8sObject)?.volumes?.find((v) => v.name === 'cdi');

describe.skipIf(!helm.path)('helm chart: cdi values (real helm template)', () => {
  it('is off by default: no --cdi and no CDI mount anywhere', () => {
    const { ok, objects, stderr } = template({ plugin: { enabled: true } });
    expect(ok, stderr).toBe(true);
    for (const c of [...containers(objects, '-agent'), ...containers(objects, '-plugin')]) {
      expect(c.args ?? []).not.toContain('--cdi');
      expect((c.volumeMounts ?? []).map((m) => m.name)).not.toContain('cdi');
    }
    expect(cdiVolume(objects, '-agent')).toBeUndefined();
  });

  it('on: the process that serves the device plugin gets --cdi --cdi-dir and a writable host mount of that directory (split, embedded, plugin-only)', () => {
    const dir = '/run/cdi-specs';
    for (const devicePlugin of ['split', 'embedded']) {
      const { ok, objects, stderr } = template({ cdi: { enabled: true, dir }, agent: { devicePlugin }, plugin: { enabled: true } });
      expect(ok, stderr).toBe(true);
      expect(validateObjects(objects, 'gpu-system')).toEqual([]);
      const serving = containers(objects, '-agent').find((c) => c.name === (devicePlugin === 'split' ? 'device-plugin' : 'agent'))!;
      const other = containers(objects, '-agent').filter((c) => c !== serving);
      for (const c of [serving, containers(objects, '-plugin')[0]!]) {
        expect(c.args?.slice(c.args.indexOf('--cdi'), c.args.indexOf('--cdi') + 3)).toEqual(['--cdi', '--cdi-dir', dir]);
        expect(c.volumeMounts?.find((m) => m.name === 'cdi')).toEqual({ name: 'cdi', mountPath: dir });
      }
      for (const c of other) expect(c.args ?? []).not.toContain('--cdi');
      expect(cdiVolume(objects, '-agent')).toEqual({ name: 'cdi', hostPath: { path: dir, type: 'DirectoryOrCreate' } });
      expect(cdiVolume(objects, '-plugin')).toEqual({ name: 'cdi', hostPath: { path: dir, type: 'DirectoryOrCreate' } });
    }
  });

  it.each([['relative/cdi'], ['/var/run/../etc'], ['']])('refuses cdi.dir %j', (dir) => {
    expect(template({ cdi: { enabled: true, dir } }).ok).toBe(false);
  });
});
