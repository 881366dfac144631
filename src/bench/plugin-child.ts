import { realClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { startDevicePlugins } from '../deviceplugin/manager.js';
import { discoverHost } from '../host/discover.js';
import { noopPluginRecorder } from '../metrics/recorders.js';
import { NodeHost } from '../sysfs/node-host.js';
import type { HostReader } from '../sysfs/port.js';
import { benchPluginKernel } from './plugin-host.js';

/**
 * Child process of the plugin benchmark: runs the device plugin with production settings, with its plugin
 * dir in `argv[2]`, over the simulated bench-16gpu host, or — when `argv[3]` names a materialised host
 * tree — over that tree through NodeHost, exactly as on a node (no simulator or profile loader loaded); then, on `{ measure: ms }` from the parent, samples its own RSS
 * and CPU for that long while idle and reports them over IPC.
 */
async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir || !process.send) throw new Error('usage: forked with an IPC channel and the plugin dir as argument');
  const root = process.argv[3];
  const reader: HostReader = root ? new NodeHost({ root }) : await benchPluginKernel();
  const plugins = await startDevicePlugins({
    reader,
    scan: () => discoverHost(reader),
    pluginDir: dir,
    resourceConfig: {},
    clock: realClock,
    logger: silentLogger,
    recorder: noopPluginRecorder,
    rescanIntervalMs: 500,
  });
  process.send({ ready: true });
  process.on('message', (m: { measure?: number }) => {
    if (typeof m.measure !== 'number') return;
    const ms = m.measure;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let maxRss = process.memoryUsage().rss;
    const sampler = setInterval(() => {
      maxRss = Math.max(maxRss, process.memoryUsage().rss);
    }, 250);
    setTimeout(() => {
      clearInterval(sampler);
      const cpu = process.cpuUsage(cpu0);
      const elapsed = performance.now() - t0;
      process.send!({ rss: process.memoryUsage().rss, maxRss, cpuMs: (cpu.user + cpu.system) / 1000, elapsedMs: elapsed });
      void plugins.stop().then(() => process.exit(0));
    }, ms);
  });
}

main().catch((err: unknown) => {
  process.send?.({ error: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
