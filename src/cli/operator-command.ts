import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { InvalidArgumentError as CommanderInvalidArgument, Option } from 'commander';
import type { Command } from 'commander';
import { Registry } from 'prom-client';
import { realClock } from '../core/clock.js';
import { MetricsServer } from '../metrics/http-server.js';
import { createOperatorMetrics } from '../metrics/metrics.js';
import { startOperator } from '../operator/run-operator.js';
import { loadKubeConfig } from './kubeconfig.js';
import { createLogger } from './logger.js';

/** `vfio-handoff operator`: the cluster-wide GpuPassthrough controller (a Deployment, usually 2 replicas). */

export interface OperatorCommandOptions {
  kubeconfig?: string;
  metricsAddr: string;
  leaderElect: boolean;
  leaseNamespace: string;
  logLevel: string;
  resync: number;
}

export function parseBool(value: string): boolean {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new CommanderInvalidArgument('expected true or false');
}

function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new CommanderInvalidArgument('expected a number of seconds');
  return n;
}

/** The Lease holder identity: the pod name (HOSTNAME in a pod) plus a random suffix, unique per process. */
export function operatorIdentity(env: NodeJS.ProcessEnv = process.env): string {
  return `${env['POD_NAME'] ?? hostname()}_${randomBytes(4).toString('hex')}`;
}

export interface OperatorCommandHooks {
  /** Stops the operator like SIGTERM does (tests; embedding). */
  stop?: AbortSignal;
}

export function registerOperatorCommand(program: Command, hooks: OperatorCommandHooks = {}): void {
  program
    .command('operator')
    .description('run the GpuPassthrough operator: merge policies into per-node specs, report status, register with KubeVirt')
    .option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then the in-cluster service account)')
    .option('--metrics-addr <[host]:port>', 'serve /metrics, /healthz and /readyz here', ':9465')
    .addOption(
      new Option('--leader-elect [bool]', 'elect a leader on a Lease so only one replica reconciles').default(true).preset('true').argParser(parseBool),
    )
    .option('--lease-namespace <ns>', 'namespace of the leader-election Lease', process.env['POD_NAMESPACE'] ?? 'vfio-handoff')
    .option('--resync <seconds>', 'reconcile every object at least this often', parseSeconds, 300)
    .option('--log-level <level>', 'log level for stderr JSON logs', 'info')
    .action(async (opts: OperatorCommandOptions) => {
      const logger = createLogger(opts.logLevel, { component: 'operator' });
      const kubeConfig = loadKubeConfig(opts.kubeconfig);

      const registry = new Registry();
      const recorder = createOperatorMetrics(registry, { processMetrics: true });
      const shutdown = new AbortController();
      const onSignal = (sig: NodeJS.Signals): void => {
        logger.info({ signal: sig }, 'shutting down');
        shutdown.abort(new Error(`received ${sig}`));
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
      hooks.stop?.addEventListener('abort', () => shutdown.abort(hooks.stop?.reason), { once: true });

      const handle = startOperator({
        kubeConfig,
        clock: realClock,
        logger,
        recorder,
        leaderElect: opts.leaderElect,
        leaseNamespace: opts.leaseNamespace,
        identity: operatorIdentity(),
        resyncMs: opts.resync * 1000,
        signal: shutdown.signal,
        readText: (url) => readFile(url, 'utf8'),
      });
      const metrics = new MetricsServer({ registry, readiness: () => handle.ready(), logger });
      try {
        await metrics.start(opts.metricsAddr);
      } catch (err) {
        // Without its probes the pod would be killed anyway; stop cleanly and say why.
        shutdown.abort(err);
        await handle.done.catch(() => undefined);
        throw err;
      }
      try {
        await handle.done;
      } finally {
        await metrics.stop();
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
      }
    });
}
