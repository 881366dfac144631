import { isAbsolute, join } from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import { assertSocketPathFits } from '../deviceplugin/resources.js';
import { Registry } from 'prom-client';
import { CdiSpecWriter } from '../cdi/writer.js';
import { realClock } from '../core/clock.js';
import { loadDraApi } from '../dra/api.js';
import { CHECKPOINT_FILE, FileClaimCheckpoint, MemoryClaimCheckpoint } from '../dra/checkpoint.js';
import { DirClaimSource, KubeClaimSource } from '../dra/claim-sources.js';
import type { ClaimSource } from '../dra/claim.js';
import { DraDriver } from '../dra/driver.js';
import { gpuFactsReader } from '../dra/facts.js';
import { nodeDraFiles } from '../dra/files-node.js';
import { DRA_SOCKET, DraPluginServer, REGISTRATION_SOCKET } from '../dra/grpc-server.js';
import { RESOURCE_CLAIMS } from '../dra/slice.js';
import { FileSliceSink, KubeSliceSink, SlicePublisher, type SliceSink } from '../dra/slice-publisher.js';
import { EventRecorder } from '../kube/events.js';
import { HttpKubeApi } from '../kube/http-kube-api.js';
import { MetricsServer } from '../metrics/http-server.js';
import { createDraMetrics } from '../metrics/dra-metrics.js';
import { createAgentMetrics } from '../metrics/metrics.js';
import { NodeSpecDir } from '../state/spec-dir.js';
import { createEngine, openHost } from './host.js';
import { loadLightKubeConfig } from './light-kubeconfig.js';
import { createLogger } from './logger.js';
import { shutdownSignal, untilAborted } from './signals.js';

export interface DraFrontEndOptions {
  readonly nodeName: string;
  readonly hostRoot: string;
  readonly stateDir: string;
  readonly profile?: string;
  readonly pluginRegistryDir: string;
  readonly draPluginDir: string;
  readonly cdiDir: string;
  readonly allowBootGpu: boolean;
  readonly keepOnVfio: boolean;
  /** No API server: claims from `<dir>/<namespace>/<name>.json`. */
  readonly claimsDir?: string;
  /** No API server: the node's ResourceSlice is written here. */
  readonly resourceSliceFile?: string;
  readonly kubeconfig?: string;
  readonly metricsAddr: string;
  readonly rescanMs: number;
  readonly logLevel: string;
}

/**
 * `vfio-handoff agent --front-end dra`: the DRA kubelet plugin of driver gpu.handoff.dev. GPUs move to
 * vfio-pci when kubelet prepares a claim for them and back when it unprepares it; the NodeGpuPassthrough
 * reconciler does not run on such a node (one front end per node: two would fight over the bindings).
 * With `--claims-dir` it needs no API server (claims from files; the ResourceSlice to
 * `--resource-slice-file`).
 */
export async function runDraFrontEnd(opts: DraFrontEndOptions): Promise<void> {
  // Checked before anything starts: a path the runtime or the kernel cannot use is a bad flag (exit 2).
  if (!isAbsolute(opts.cdiDir)) throw new InvalidArgumentError(`--cdi-dir must be an absolute path, not ${JSON.stringify(opts.cdiDir)}`);
  assertSocketPathFits(join(opts.draPluginDir, DRA_SOCKET));
  assertSocketPathFits(join(opts.pluginRegistryDir, REGISTRATION_SOCKET));
  const logger = createLogger(opts.logLevel, { component: 'dra', node: opts.nodeName });
  const signal = shutdownSignal();
  const registry = new Registry();
  const recorder = createAgentMetrics(registry, { processMetrics: true });
  const draRecorder = createDraMetrics(registry);
  const { host, store, simulated } = await openHost({ hostRoot: opts.hostRoot, stateDir: opts.stateDir, profile: opts.profile });
  const engine = createEngine(host, store, logger, { simulated, recorder });
  const recovered = await engine.recover(signal);
  if (recovered.length) logger.warn({ recovered: recovered.map((r) => ({ group: r.group, outcome: r.outcome })) }, 'recovered unfinished handoff');

  const kube = opts.claimsDir === undefined ? new HttpKubeApi({ config: loadLightKubeConfig(opts.kubeconfig) }) : undefined;
  const claims: ClaimSource = kube ? new KubeClaimSource(kube) : new DirClaimSource(opts.claimsDir!, nodeDraFiles);
  const events = kube ? new EventRecorder({ api: kube, clock: realClock, logger }, { component: 'vfio-handoff-dra', host: opts.nodeName }) : undefined;
  const facts = gpuFactsReader(host);
  const cdi = new CdiSpecWriter({ dir: new NodeSpecDir({ dir: opts.cdiDir }), logger });
  // GPUs still prepared for claims from before a restart keep their CDI devices.
  await cdi.sync(await engine.discover());
  const driver = new DraDriver({
    nodeName: opts.nodeName,
    engine,
    claims,
    // A simulated host (--profile) lives in memory, and so do its journal and records: a checkpoint on disk would
    // outlive it and answer the next run's prepare for GPUs that host never moved.
    checkpoint: simulated ? new MemoryClaimCheckpoint() : new FileClaimCheckpoint(join(opts.stateDir, CHECKPOINT_FILE), nodeDraFiles),
    policy: { allowBootGpu: opts.allowBootGpu, keepOnVfio: opts.keepOnVfio },
    metadataDir: join(opts.draPluginDir, 'metadata'),
    cdiDir: opts.cdiDir,
    cdi,
    files: nodeDraFiles,
    facts,
    clock: realClock,
    logger,
    recorder: draRecorder,
    onClaimError: (c, op, reason, message) =>
      void events?.warning({ apiVersion: 'resource.k8s.io/v1', kind: RESOURCE_CLAIMS.kind, name: c.name, namespace: c.namespace, uid: c.uid }, op === 'prepare' ? 'PrepareFailed' : 'UnprepareFailed', `${reason}: ${message}`),
  });
  const sink: SliceSink | undefined = kube ? new KubeSliceSink(kube) : opts.resourceSliceFile ? new FileSliceSink(opts.resourceSliceFile, nodeDraFiles) : undefined;
  const publisher = sink ? new SlicePublisher({ nodeName: opts.nodeName, sink, facts, clock: realClock, logger }) : undefined;
  let registered = false;
  const server = new DraPluginServer({
    api: loadDraApi(),
    driver,
    registrationSocket: join(opts.pluginRegistryDir, REGISTRATION_SOCKET),
    draSocket: join(opts.draPluginDir, DRA_SOCKET),
    logger,
    onRegistration: (s) => {
      registered = s.plugin_registered;
      // kubelet wipes a driver's slices when it deregisters; after a (re-)registration, make sure ours is there.
      if (s.plugin_registered && publisher) {
        publisher.resync();
        void engine.discover().then((snap) => publisher.update(snap), () => undefined);
      }
    },
  });
  const metrics = new MetricsServer({ registry, logger, readiness: () => ({ ready: registered, detail: registered ? 'ok' : 'not registered with kubelet' }) });
  if (opts.metricsAddr) await metrics.start(opts.metricsAddr);
  if (publisher) await publisher.update(await engine.discover());
  await server.start();
  logger.info({ registration: join(opts.pluginRegistryDir, REGISTRATION_SOCKET), endpoint: join(opts.draPluginDir, DRA_SOCKET) }, 'DRA plugin serving');
  const rescan = publisher
    ? setInterval(() => {
        engine.discover().then(
          (s) => publisher.update(s),
          (err: Error) => logger.warn({ err: err.message }, 'rescan failed'),
        );
      }, opts.rescanMs)
    : undefined;
  await untilAborted(signal);
  if (rescan) clearInterval(rescan);
  publisher?.stop();
  // GPUs of prepared claims stay as they are: a rolling update must not unbind GPUs under running VMs.
  await server.stop();
  if (opts.metricsAddr) await metrics.stop();
  kube?.close();
  logger.info({}, 'DRA plugin stopped; prepared claims kept in the checkpoint');
}
