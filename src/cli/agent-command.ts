import type { Command } from 'commander';
import { Registry } from 'prom-client';
import { GrpcPodResources } from '../agent/pod-resources.js';
import { NODE_LABEL, NODE_OBJECT, NodeAgent } from '../agent/node-agent.js';
import { realClock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { InvalidArgumentError } from '../core/errors.js';
import { discoverHost } from '../host/discover.js';
import { namesFromSpec } from '../devices/resource-names-file.js';
import { DevicePluginManager, startDevicePlugins, DEFAULT_PLUGIN_DIR, type RunningDevicePlugins } from '../deviceplugin/manager.js';
import { CdiSpecWriter } from '../cdi/writer.js';
import { DEFAULT_CDI_DIR } from '../cdi/spec.js';
import { HttpKubeApi } from '../kube/http-kube-api.js';
import { ObjectWatcher } from '../kube/object-watcher.js';
import type { KubeApi, KubeObject } from '../kube/port.js';
import { MetricsServer } from '../metrics/http-server.js';
import { createAgentMetrics } from '../metrics/metrics.js';
import { ResourceNamesFollower, ResourceNamesPublisher } from '../state/resource-names-file.js';
import { NodeSpecDir } from '../state/spec-dir.js';
import { NodeHost } from '../sysfs/node-host.js';
import { OverlayReader } from '../sysfs/overlay-reader.js';
import type { HostReader } from '../sysfs/port.js';
import { parseFrontEnd, DEFAULT_FRONT_END } from '../devices/front-end.js';
import { DEFAULT_DRA_PLUGIN_DIR, DEFAULT_REGISTRY_DIR } from '../dra/grpc-server.js';
import { createEngine, openHost } from './host.js';
import { loadLightKubeConfig } from './light-kubeconfig.js';
import { createLogger } from './logger.js';
import { loadResourceConfig } from './resource-config.js';
import { shutdownSignal, untilAborted } from './signals.js';

/** pci.ids from the container image when the host mount has none (the DaemonSet mounts only what it needs). */
function pciIdsReader(host: HostReader): HostReader {
  return new OverlayReader({ primary: host, fallback: new NodeHost({ root: '/' }), prefixes: ['usr/share/misc/', 'usr/share/hwdata/'] });
}

/** The CDI spec writer when `--cdi` is on (the spec directory is a node path, like --state-dir). */
function cdiWriter(opts: { cdi?: boolean; cdiDir: string }, logger: Logger): CdiSpecWriter | undefined {
  if (opts.cdi && !opts.cdiDir.startsWith('/')) throw new InvalidArgumentError(`--cdi-dir must be an absolute path, not ${JSON.stringify(opts.cdiDir)}`);
  return opts.cdi ? new CdiSpecWriter({ dir: new NodeSpecDir({ dir: opts.cdiDir }), logger }) : undefined;
}

const CDI_HELP = 'write a CDI spec (kind handoff.dev/gpu) for the GPUs on vfio-pci and answer Allocate with CDI device IDs instead of device nodes (needs a CDI-enabled runtime: containerd ≥ 1.7, CRI-O; kubelet ≥ 1.31 or gate DevicePluginCDIDevices)';
const CDI_DIR_HELP = 'the CDI spec directory the container runtime reads';

function parseDuration(raw: string): number {
  const m = /^(\d+)(ms|s|m)?$/.exec(raw);
  if (!m) throw new InvalidArgumentError(`bad duration ${JSON.stringify(raw)} (e.g. 30s, 500ms, 5m)`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

/** Node's timers take 1..2^31-1 ms; outside that, setInterval runs every 1 ms (a busy loop). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A period for setInterval (`--resync-interval`, `--rescan-interval`): a duration above 0 that a timer can hold. */
export function parseInterval(raw: string, flag: string): number {
  const ms = parseDuration(raw);
  if (ms < 1 || ms > MAX_TIMER_MS) throw new InvalidArgumentError(`${flag} must be between 1ms and ${Math.floor(MAX_TIMER_MS / 60_000)}m, not ${JSON.stringify(raw)}`);
  return ms;
}

export function registerPluginCommand(program: Command): void {
  program
    .command('plugin')
    .description('advertise GPUs that are already on vfio-pci to kubelet (read-only: never writes the host)')
    .option('--host-root <dir>', 'where the host filesystem is mounted', '/')
    .option('--device-plugin-dir <dir>', "kubelet's device-plugin directory", DEFAULT_PLUGIN_DIR)
    .option('--resource-config <file>', 'YAML resource-name overrides per address, vendor:device or class')
    .option('--resource-names-file <file>', 'per-address resource names written by `agent --device-plugin off` (followed for changes)')
    .option('--resource-names-wait <duration>', 'at start, wait this long for --resource-names-file to appear before registering', '0s')
    .option('--metrics-addr <addr>', 'serve /metrics, /healthz, /readyz here (empty: off)', '')
    .option('--rescan-interval <duration>', 'how often to check the host for changes (a cheap fingerprint; a full scan only when it moved): 500ms keeps a GPU that goes bad under 1 s from kubelet', '500ms')
    .option('--cdi', CDI_HELP)
    .option('--cdi-dir <dir>', CDI_DIR_HELP, DEFAULT_CDI_DIR)
    .option('--profile <name|file>', 'simulated host instead of the real one (for trying it out)')
    .option('--log-level <level>', 'log level', 'info')
    .action(
      async (opts: {
        cdi?: boolean;
        cdiDir: string;
        hostRoot: string;
        devicePluginDir: string;
        resourceConfig?: string;
        resourceNamesFile?: string;
        resourceNamesWait: string;
        metricsAddr: string;
        rescanInterval: string;
        profile?: string;
        logLevel: string;
      }) => {
        const logger = createLogger(opts.logLevel, { component: 'plugin' });
        const signal = shutdownSignal();
        const { host } = await openHost({ hostRoot: opts.hostRoot, stateDir: '/nonexistent', profile: opts.profile });
        const reader: HostReader = host; // the plugin only ever reads
        const registry = new Registry();
        const recorder = createAgentMetrics(registry, { processMetrics: true });
        // Names from the agent apply before the first registration, so a fresh pod does not first register
        // the pci.ids names and then rename (kubelet would keep the stale resource for its grace period).
        let started = false;
        const follower = opts.resourceNamesFile
          ? new ResourceNamesFollower({
              path: opts.resourceNamesFile,
              clock: realClock,
              logger,
              onChange: ({ names, withdrawn }) => {
                manager.setAddressOverrides(names);
                // Sets the field at once (this scan sees it); the rescan it asks for is coalesced.
                void manager.setWithdrawn(withdrawn, started);
                if (started) void manager.rescan(); // coalesced with a scan in progress
              },
            })
          : undefined;
        const manager = new DevicePluginManager({
          reader: pciIdsReader(reader),
          // Every scan first re-reads the names file (one stat when unchanged). The agent writes a GPU's name
          // before it moves the GPU, so the scan that first sees the GPU ready also sees its name: the manager
          // keeps a device under the resource it first advertised it with.
          scan: async () => {
            await follower?.check();
            return discoverHost(reader);
          },
          pluginDir: opts.devicePluginDir,
          resourceConfig: await loadResourceConfig(opts.resourceConfig),
          clock: realClock,
          logger,
          recorder,
          rescanIntervalMs: parseInterval(opts.rescanInterval, '--rescan-interval'),
          cdi: cdiWriter(opts, logger),
        });
        if (follower) {
          const waitMs = parseDuration(opts.resourceNamesWait);
          if (waitMs > 0 && !(await follower.waitForFile(waitMs, signal))) logger.warn({ path: opts.resourceNamesFile, waitMs }, 'resource names file did not appear; starting with default names');
          await follower.check();
        }
        try {
          await manager.start();
        } catch (err) {
          await manager.stop();
          throw err;
        }
        started = true;
        const following = follower?.run(signal);
        const metrics = opts.metricsAddr ? new MetricsServer({ registry, readiness: () => true, logger }) : undefined;
        if (metrics) await metrics.start(opts.metricsAddr);
        logger.info({ resources: [...manager.deviceSets().keys()] }, 'device plugin serving');
        await untilAborted(signal);
        await following;
        await manager.stop();
        await metrics?.stop();
      },
    );
}

export function registerAgentCommand(program: Command): void {
  program
    .command('agent')
    .description('node agent: drives GPUs to this node\u2019s NodeGpuPassthrough spec and (unless --device-plugin off) serves the device plugin')
    .option('--host-root <dir>', 'where the host filesystem is mounted', '/')
    .option('--state-dir <dir>', 'journal and records of what prepare changed', '/var/lib/vfio-handoff')
    .option('--device-plugin <mode>', 'embedded: serve the device plugin in this process; off: leave it to `vfio-handoff plugin` (least privilege)', 'embedded')
    .option('--device-plugin-dir <dir>', "kubelet's device-plugin directory (embedded device plugin)", DEFAULT_PLUGIN_DIR)
    .option('--resource-names-file <file>', 'write the per-address resource names of the spec here, atomically, for `vfio-handoff plugin`')
    .option('--pod-resources-socket <path>', "kubelet's PodResources socket", '/var/lib/kubelet/pod-resources/kubelet.sock')
    .option('--metrics-addr <addr>', 'serve /metrics, /healthz, /readyz here', ':9464')
    .option('--node-name <name>', 'this node (the DaemonSet passes spec.nodeName)', process.env.NODE_NAME)
    .option('--kubeconfig <file>', 'kubeconfig (default: in-cluster)')
    .option('--kube-client <kind>', 'light: small built-in HTTP client (in-cluster, token or client-cert kubeconfigs); client-node: the full client (exec/auth-provider kubeconfigs)', 'light')
    .option('--resource-config <file>', 'YAML resource-name overrides (policies can also set resourceName)')
    .option('--resync-interval <duration>', 'level-triggered pass at least this often', '30s')
    .option('--cdi', `${CDI_HELP} (embedded device plugin)`)
    .option('--cdi-dir <dir>', CDI_DIR_HELP, DEFAULT_CDI_DIR)
    .option('--profile <name|file>', 'simulated host instead of the real one (for trying it out)')
    .option('--front-end <kind>', 'device-plugin: GPUs go to vfio-pci per the NodeGpuPassthrough spec and are offered to kubelet as extended resources; dra: the DRA kubelet plugin of driver gpu.handoff.dev (a GPU goes to vfio-pci when a claim for it is prepared)', DEFAULT_FRONT_END)
    .option('--plugin-registry-dir <dir>', "dra: kubelet's plugin registry directory", DEFAULT_REGISTRY_DIR)
    .option('--dra-plugin-dir <dir>', 'dra: directory of the DRA service socket and the device-metadata files', DEFAULT_DRA_PLUGIN_DIR)
    .option('--allow-boot-gpu', "dra: the node's policy allows preparing the boot GPU (a claim must also ask, GpuConfig allowBootGpu: true)")
    .option('--keep-on-vfio', 'dra: leave GPUs on vfio-pci when their claim is unprepared')
    .option('--claims-dir <dir>', 'dra without an API server (tests, the QEMU guest): ResourceClaims from <dir>/<namespace>/<name>.json')
    .option('--resource-slice-file <file>', 'dra without an API server: write the node\u2019s ResourceSlice here')
    .option('--rescan-interval <duration>', 'dra: how often the host is rescanned for the ResourceSlice (hot add/remove)', '2s')
    .option('--log-level <level>', 'log level', 'info')
    .action(async (opts: {
      frontEnd: string;
      pluginRegistryDir: string;
      draPluginDir: string;
      allowBootGpu?: boolean;
      keepOnVfio?: boolean;
      claimsDir?: string;
      resourceSliceFile?: string;
      rescanInterval: string;
      cdi?: boolean;
      cdiDir: string;
      hostRoot: string;
      stateDir: string;
      devicePlugin: string;
      devicePluginDir: string;
      resourceNamesFile?: string;
      podResourcesSocket: string;
      metricsAddr: string;
      nodeName?: string;
      kubeconfig?: string;
      kubeClient: string;
      resourceConfig?: string;
      resyncInterval: string;
      profile?: string;
      logLevel: string;
    }, cmd: Command) => {
      if (!opts.nodeName) throw new InvalidArgumentError('--node-name (or NODE_NAME) is required');
      if (opts.devicePlugin !== 'embedded' && opts.devicePlugin !== 'off') throw new InvalidArgumentError(`--device-plugin must be embedded or off, not ${JSON.stringify(opts.devicePlugin)}`);
      // A flag the chosen front end does not read is refused, not silently ignored.
      const given = (flags: readonly string[]): string[] => flags.filter((f) => cmd.getOptionValueSource(camel(f)) === 'cli');
      const frontEnd = parseFrontEnd(opts.frontEnd);
      const misplaced =
        frontEnd === 'dra'
          ? given(['--cdi', '--device-plugin', '--device-plugin-dir', '--resource-names-file', '--resource-config', '--pod-resources-socket', '--resync-interval'])
          : given(['--plugin-registry-dir', '--dra-plugin-dir', '--allow-boot-gpu', '--keep-on-vfio', '--rescan-interval']);
      if (misplaced.length > 0) {
        throw new InvalidArgumentError(`${misplaced.join(', ')} ${misplaced.length === 1 ? 'has' : 'have'} no effect with --front-end ${frontEnd}`);
      }
      if (opts.kubeClient !== 'light' && opts.kubeClient !== 'client-node') throw new InvalidArgumentError(`--kube-client must be light or client-node, not ${JSON.stringify(opts.kubeClient)}`);
      if (opts.devicePlugin !== 'embedded' && opts.devicePlugin !== 'off') throw new InvalidArgumentError(`--device-plugin must be embedded or off, not ${JSON.stringify(opts.devicePlugin)}`);
      const resyncMs = parseInterval(opts.resyncInterval, '--resync-interval');
      if (parseFrontEnd(opts.frontEnd) === 'dra') {
        // The DRA front end talks to the API server through the built-in client only: a kubeconfig that needs
        // client-node (exec or auth-provider plugins) must not be silently read by the other client.
        if (opts.kubeClient !== 'light') throw new InvalidArgumentError('--kube-client client-node is not supported with --front-end dra (it uses the built-in client: in-cluster, token or client-certificate kubeconfigs)');
        const { runDraFrontEnd } = await import('./dra-command.js');
        await runDraFrontEnd({
          nodeName: opts.nodeName,
          hostRoot: opts.hostRoot,
          stateDir: opts.stateDir,
          ...(opts.profile !== undefined ? { profile: opts.profile } : {}),
          pluginRegistryDir: opts.pluginRegistryDir,
          draPluginDir: opts.draPluginDir,
          cdiDir: opts.cdiDir,
          allowBootGpu: opts.allowBootGpu === true,
          keepOnVfio: opts.keepOnVfio === true,
          ...(opts.claimsDir !== undefined ? { claimsDir: opts.claimsDir } : {}),
          ...(opts.resourceSliceFile !== undefined ? { resourceSliceFile: opts.resourceSliceFile } : {}),
          ...(opts.kubeconfig !== undefined ? { kubeconfig: opts.kubeconfig } : {}),
          metricsAddr: opts.metricsAddr,
          rescanMs: parseInterval(opts.rescanInterval, '--rescan-interval'),
          logLevel: opts.logLevel,
        });
        return;
      }
      if (opts.claimsDir !== undefined || opts.resourceSliceFile !== undefined) throw new InvalidArgumentError('--claims-dir and --resource-slice-file belong to --front-end dra');
      const embedded = opts.devicePlugin === 'embedded';
      const logger = createLogger(opts.logLevel, { component: 'agent', node: opts.nodeName });
      if (!embedded && opts.cdi) logger.warn({}, '--cdi has no effect with --device-plugin off: pass --cdi to `vfio-handoff plugin`');
      if (!embedded && !opts.resourceNamesFile) logger.warn({}, '--device-plugin off without --resource-names-file: policies\u2019 resource names reach no device plugin');
      const signal = shutdownSignal();
      const registry = new Registry();
      const recorder = createAgentMetrics(registry, { processMetrics: true });
      const { host, store, simulated } = await openHost({ hostRoot: opts.hostRoot, stateDir: opts.stateDir, profile: opts.profile });
      const engine = createEngine(host, store, logger, { simulated, recorder });
      // A crash mid-handoff (previous agent process) is finished or undone before anything else.
      const recovered = await engine.recover(signal);
      if (recovered.length) logger.warn({ recovered: recovered.map((r) => ({ group: r.group, outcome: r.outcome })) }, 'recovered unfinished handoff');

      let plugins: RunningDevicePlugins | undefined;
      let lastPassOk = false;
      const metrics = new MetricsServer({
        registry,
        logger,
        readiness: () => {
          if (embedded && !plugins) return { ready: false, detail: 'device plugin not started' };
          return { ready: lastPassOk, detail: lastPassOk ? 'ok' : 'last reconcile failed' };
        },
      });
      const bound = await metrics.start(opts.metricsAddr);
      logger.info({ metrics: bound, devicePlugin: opts.devicePlugin }, 'metrics listening');
      if (embedded) {
        plugins = await startDevicePlugins({
          reader: pciIdsReader(host),
          scan: () => engine.discover(),
          pluginDir: opts.devicePluginDir,
          resourceConfig: await loadResourceConfig(opts.resourceConfig),
          clock: realClock,
          logger,
          recorder,
          rescanIntervalMs: 500, // a GPU that goes bad reaches kubelet within 1 s (npm run bench -- peers)
          cdi: cdiWriter(opts, logger),
        });
      }
      const publisher = opts.resourceNamesFile ? new ResourceNamesPublisher({ path: opts.resourceNamesFile, logger }) : undefined;
      // The light client keeps client-node (~75 MiB of module graph) out of the agent on every node.
      const light = opts.kubeClient === 'light' ? new HttpKubeApi({ config: loadLightKubeConfig(opts.kubeconfig) }) : undefined;
      const heavy = light ? undefined : await clientNodeApi(opts.kubeconfig, logger);
      const kube: KubeApi = light ?? heavy!.api;
      const agent = new NodeAgent({
        nodeName: opts.nodeName,
        engine,
        kube,
        podResources: new GrpcPodResources({ socketPath: opts.podResourcesSocket }),
        clock: realClock,
        logger,
        recorder,
        // Split mode: the plugin process follows the withdrawn list in the names file.
        withdraw: embedded ? (addresses) => plugins!.manager.setWithdrawn(addresses) : publisher ? (addresses) => publisher.withdraw(addresses) : undefined,
        withdrawSettleMs: embedded ? 1_000 : 3_000,
        onHostChanged: (snapshot, names) => {
          plugins?.manager.setAddressOverrides(names);
          void plugins?.rescan();
          // Split mode: the plugin container follows this file; a new generation also makes it rescan now.
          void publisher?.publish(names, snapshot);
        },
      });
      const pass = (): void => {
        agent.trigger().then(
          () => (lastPassOk = true),
          (err: Error) => {
            lastPassOk = false;
            logger.error({ err: err.message }, 'reconcile pass failed');
          },
        );
      };
      await agent.ensureObject();
      const selector = `${NODE_LABEL}=${opts.nodeName}`;
      // The spec's names reach the device plugin before the pass prepares anything: the plugin keeps a GPU
      // under the resource it first advertised it with, so it must know the name before the GPU is ready.
      const onSpec = (obj: KubeObject): void => {
        const names = namesFromSpec((obj as { spec?: Parameters<typeof namesFromSpec>[0] }).spec);
        plugins?.manager.setAddressOverrides(names);
        // The pass waits for the file (publish never rejects): the name must be on disk before any binding moves.
        void (publisher?.publish(names) ?? Promise.resolve()).then(pass);
      };
      let stopWatching: () => Promise<void>;
      if (light) {
        const watcher = new ObjectWatcher({ api: light, clock: realClock, logger }, { resource: NODE_OBJECT, labelSelector: selector, onChange: (o) => (o ? onSpec(o) : pass()) });
        const watching = watcher.run(signal);
        const resync = setInterval(pass, resyncMs);
        stopWatching = async () => {
          clearInterval(resync);
          await watching;
          light.close();
        };
      } else {
        const informer = heavy!.informer(selector, resyncMs);
        informer.on({ add: onSpec, update: onSpec, resync: pass });
        informer.start(signal);
        stopWatching = () => informer.stop();
      }
      pass();
      await untilAborted(signal);
      // Stop serving; never release GPUs on shutdown (a rolling update must not unbind GPUs under running VMs).
      await stopWatching();
      await agent.settled();
      await publisher?.settled();
      await plugins?.stop();
      await metrics.stop();
      logger.info({}, 'agent stopped; GPU bindings left as they are');
    });
}

/** client-node, loaded only when asked for (--kube-client client-node). */
async function clientNodeApi(kubeconfig: string | undefined, logger: Logger): Promise<{
  api: KubeApi;
  informer: (labelSelector: string, resyncMs: number) => { on(h: { add?(o: KubeObject): void; update?(o: KubeObject): void; resync?(o: KubeObject): void }): void; start(signal: AbortSignal): void; stop(): Promise<void> };
}> {
  const [{ loadKubeConfig }, { ClientNodeKubeApi }, { ResilientInformer }] = await Promise.all([
    import('./kubeconfig.js'),
    import('../kube/kube-api.js'),
    import('../kube/informer.js'),
  ]);
  const kubeConfig = loadKubeConfig(kubeconfig);
  const api = new ClientNodeKubeApi({ kubeConfig });
  return {
    api,
    informer: (labelSelector, resyncMs) =>
      new ResilientInformer<KubeObject>({ kubeConfig, api, clock: realClock, logger }, { resource: NODE_OBJECT, labelSelector, resyncPeriodMs: resyncMs }),
  };
}

/** `--dra-plugin-dir` → `draPluginDir`, the key commander stores the option under. */
function camel(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
