import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { NodeGpuPassthrough } from '../../../src/api/v1alpha1/index.js';
import { FakeApiServer } from '../../support/fake-apiserver/index.js';
import { until } from './support.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');

describe('vfio-handoff agent --kube-client client-node (the full client, for exec/auth-provider kubeconfigs)', () => {
  it('watches its object through client-node and drives a GPU to Ready', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vh-agent-cn-'));
    const api = await FakeApiServer.start();
    api.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'kc'), api.kubeConfig().exportConfig());
    const agent = spawn(process.execPath, [
      CLI, 'agent', '--kube-client', 'client-node', '--device-plugin', 'off', '--profile', 'server-aspeed-4xh100',
      '--node-name', 'n1', '--kubeconfig', join(dir, 'kc'), '--pod-resources-socket', join(dir, 'none.sock'),
      '--state-dir', join(dir, 'state'), '--metrics-addr', '127.0.0.1:0', '--resync-interval', '1s',
    ]);
    try {
      const obj = () => api.object('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', 'n1') as unknown as NodeGpuPassthrough | undefined;
      await until('inventory', () => obj()?.status?.inventory);
      api.seed('handoff.dev', 'v1alpha1', 'nodegpupassthroughs', { ...(obj() as unknown as Record<string, unknown>), spec: { gpus: [{ address: '0000:3b:00.0', policy: 'p' }] } });
      await until('Ready', () => obj()?.status?.gpus?.find((g) => g.address === '0000:3b:00.0' && g.phase === 'Ready'));
      const exited = new Promise<number | null>((resolve) => agent.on('exit', resolve));
      agent.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      agent.kill('SIGKILL');
      await api.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
