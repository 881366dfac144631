import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cdiSpecProblems } from '../../support/cdi-schema.js';
import { cli } from '../../support/cli.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('vfio-handoff plugin --cdi (built CLI, simulated host)', () => {
  it('writes the CDI spec for the GPUs on vfio-pci into --cdi-dir, and leaves it there on shutdown', { timeout: 60_000 }, async () => {
    const root = await mkdtemp(join(tmpdir(), 'vh-cdi-cli-'));
    dirs.push(root);
    const cdiDir = join(root, 'cdi');
    // No kubelet in the plugin dir: registration retries in the background, the scan (and the spec) happen anyway.
    const child = spawn(process.execPath, [join(process.cwd(), 'dist/cli/main.js'), 'plugin', '--profile', 'server-aspeed-l40s-vfio', '--device-plugin-dir', root, '--cdi', '--cdi-dir', cdiDir, '--log-level', 'error']);
    try {
      const text = await vi.waitFor(() => readFile(join(cdiDir, 'handoff.dev-gpu.json'), 'utf8'), { timeout: 30_000, interval: 50 });
      const spec = JSON.parse(text) as { devices: { name: string }[] };
      expect(cdiSpecProblems(spec)).toEqual([]);
      expect(spec.devices.map((d) => d.name)).toEqual(['gpu-0000-18-00-0', 'gpu-0000-3b-00-0', 'gpu-0000-9b-00-0', 'gpu-0000-bb-00-0']);
    } finally {
      const closed = new Promise((r) => child.on('close', r));
      child.kill('SIGTERM');
      await closed;
    }
    // A restart of the plugin must not pull the spec from containers that still use it.
    expect(await readFile(join(cdiDir, 'handoff.dev-gpu.json'), 'utf8')).toContain('gpu-0000-18-00-0');
  });

  it('refuses a relative --cdi-dir with exit 2 and writes nothing', async () => {
    const r = await cli(['plugin', '--profile', 'server-aspeed-l40s-vfio', '--cdi', '--cdi-dir', 'relative/cdi']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--cdi-dir');
  });
});
