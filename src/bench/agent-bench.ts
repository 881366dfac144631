import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FakeApiServer } from '../testing/fake-apiserver/index.js';
import { FakeKubelet } from '../testing/fake-kubelet.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/**
 * Idle RSS and CPU of a real `vfio-handoff agent` process (engine + embedded device plugin + light API
 * client) on the simulated 16-GPU host, registered with a kubelet emulator and a fake API server, after
 * a 15 s settle, sampled for 10 s. Run with the DaemonSet's NODE_OPTIONS (--max-semi-space-size=1).
 */
export async function runAgentBench(): Promise<Record<string, number | string>> {
  const dir = await mkdtemp(join(tmpdir(), 'vfio-handoff-agent-bench-'));
  const api = await FakeApiServer.start();
  const out: Record<string, number | string> = {};
  try {
    api.seed('', 'v1', 'nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'bench-node' } });
    await writeFile(join(dir, 'kubeconfig'), api.kubeConfig().exportConfig());
    await mkdir(join(dir, 'device-plugins'));
    const kubelet = await FakeKubelet.start(join(dir, 'device-plugins'));
    for (const [label, extraArgs] of [
      ['agent_embedded_plugin', []],
      ['agent_split', ['--device-plugin', 'off', '--resource-names-file', join(dir, 'names.json')]],
    ] as const) {
      const child = spawn(
        process.execPath,
        [CLI, 'agent', '--profile', 'bench-16gpu', '--node-name', 'bench-node', '--kubeconfig', join(dir, 'kubeconfig'),
          '--device-plugin-dir', join(dir, 'device-plugins'), '--pod-resources-socket', join(dir, 'none.sock'),
          '--state-dir', join(dir, `state-${label}`), '--metrics-addr', '127.0.0.1:0', '--log-level', 'warn', ...extraArgs],
        { env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=1' }, stdio: 'ignore' },
      );
      try {
        await new Promise((r) => setTimeout(r, 15_000));
        const ticks = async (): Promise<number> => {
          const f = (await readFile(`/proc/${child.pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
          return Number(f[11]) + Number(f[12]);
        };
        const rss = async (): Promise<number> => Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
        const t0 = await ticks();
        const samples: number[] = [];
        for (let i = 0; i < 20; i++) {
          samples.push(await rss());
          await new Promise((r) => setTimeout(r, 500));
        }
        out[`${label}.idle_rss_mib`] = Math.round((samples.reduce((a, b) => a + b, 0) / samples.length) * 10) / 10;
        out[`${label}.idle_rss_max_mib`] = Math.round(Math.max(...samples) * 10) / 10;
        out[`${label}.idle_cpu_percent`] = Math.round((((await ticks()) - t0) / 100 / 10) * 100 * 100) / 100;
      } finally {
        child.kill('SIGTERM');
      }
    }
    await kubelet.close();
  } finally {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}
