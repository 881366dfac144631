import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../core/clock.js';
import { NotFoundError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { KubeApi } from '../kube/index.js';
import { ClientNodeKubeApi, CoreResources, EventRecorder, LeaderElector } from '../kube/index.js';
import type { PolicyRecorder, ReconcileRecorder } from '../metrics/recorders.js';
import type { CrdCheck, ReadText } from '../api/v1alpha1/index.js';
import { SHIPPED_KINDS, checkInstalledCrd, loadCrd } from '../api/v1alpha1/index.js';
import type { OperatorControllerOptions } from './controller.js';
import { OperatorController } from './controller.js';

/**
 * Composition of the operator process: the KubeApi adapter, the EventRecorder, the controller (informers
 * on every replica), and Lease leader election deciding which replica runs the reconcile workers.
 */

export const OPERATOR_COMPONENT = 'vfio-handoff-operator';
export const DEFAULT_LEASE_NAME = 'vfio-handoff-operator';

export interface LeaderElectionTiming {
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export interface RunOperatorDeps {
  kubeConfig: KubeConfig;
  clock: Clock;
  logger: Logger;
  recorder: ReconcileRecorder & Partial<PolicyRecorder>;
  /** false: this replica reconciles unconditionally (a single replica, or local runs). */
  leaderElect: boolean;
  leaseNamespace: string;
  /** Unique per process: the Lease holder identity and the Events' reportingInstance. */
  identity: string;
  resyncMs: number;
  signal: AbortSignal;
  /** Defaults to a ClientNodeKubeApi over `kubeConfig`. */
  api?: KubeApi;
  /** The API the leader election uses; defaults to `api` (tests cut one replica off with it). */
  leaseApi?: Pick<KubeApi, 'get' | 'create' | 'replace'>;
  /** Reads the shipped CRD files for the start-up check; without it the check is skipped. */
  readText?: ReadText;
  leaseName?: string;
  leaderElection?: LeaderElectionTiming;
  /** Namespace of Events about cluster-scoped objects. Default `default` (where kubectl describe looks). */
  eventNamespace?: string;
  controller?: Omit<OperatorControllerOptions, 'resyncMs'>;
}

export interface OperatorHandle {
  readonly controller: OperatorController;
  /** Caches synced (a standby replica is ready too: it can take over at once). */
  ready(): { ready: boolean; detail?: string };
  isLeader(): boolean;
  /** Resolves once the operator has shut down after `signal` aborted. */
  readonly done: Promise<void>;
}

/** Compares the installed CRDs with the shipped ones and logs what does not match; never throws. */
export async function checkCrds(deps: { api: Pick<KubeApi, 'get'>; readText: ReadText; logger: Logger }): Promise<Map<string, CrdCheck>> {
  const out = new Map<string, CrdCheck>();
  for (const kind of SHIPPED_KINDS) {
    let check: CrdCheck;
    try {
      const shipped = await loadCrd(kind, deps.readText);
      let installed: unknown;
      try {
        installed = await deps.api.get(CoreResources.customResourceDefinitions, kind.crdName);
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
        installed = undefined;
      }
      check = checkInstalledCrd(installed, shipped);
    } catch (err) {
      check = { ok: false, problems: [`cannot check: ${err instanceof Error ? err.message : String(err)}`] };
    }
    out.set(kind.crdName, check);
    // A mismatch is logged, not fatal: an older CRD only prunes fields, and the admin must see why.
    if (!check.ok) deps.logger.error({ crd: kind.crdName, problems: check.problems }, 'installed CRD does not match this operator');
    else deps.logger.info({ crd: kind.crdName }, 'installed CRD matches');
  }
  return out;
}

export function startOperator(deps: RunOperatorDeps): OperatorHandle {
  const { clock, logger, recorder, signal } = deps;
  const api = deps.api ?? new ClientNodeKubeApi({ kubeConfig: deps.kubeConfig });
  const events = new EventRecorder(
    { api, clock, logger },
    { component: OPERATOR_COMPONENT, host: deps.identity, defaultNamespace: deps.eventNamespace ?? 'default' },
  );
  let elector: LeaderElector | undefined;
  const controller = new OperatorController(
    // Fencing: with leader election, every write first checks that our Lease renewal is recent enough.
    { api, kubeConfig: deps.kubeConfig, clock, logger, recorder, events, ...(deps.leaderElect ? { mayWrite: () => elector?.mayWrite() ?? false } : {}) },
    { ...deps.controller, resyncMs: deps.resyncMs },
  );

  const done = (async (): Promise<void> => {
    if (deps.readText) await checkCrds({ api, readText: deps.readText, logger });
    if (signal.aborted) return;
    controller.start(signal);
    try {
      if (!deps.leaderElect) {
        recorder.leader(true);
        await controller.lead(signal);
        return;
      }
      elector = new LeaderElector(
        { api: deps.leaseApi ?? api, clock, logger, recorder },
        { namespace: deps.leaseNamespace, name: deps.leaseName ?? DEFAULT_LEASE_NAME, identity: deps.identity, ...deps.leaderElection },
      );
      let term: Promise<void> = Promise.resolve();
      await elector.run(
        {
          onStartedLeading: (s) => {
            term = controller.lead(s);
          },
          onStoppedLeading: () => logger.info({}, 'lost leadership; reconcile workers stopped'),
          onNewLeader: (identity) => logger.info({ leader: identity }, 'leader observed'),
        },
        signal,
      );
      await term;
    } finally {
      await controller.stop();
    }
  })();

  return {
    controller,
    ready: () => (controller.hasSynced() ? { ready: true } : { ready: false, detail: 'informer caches not synced' }),
    isLeader: () => (deps.leaderElect ? (elector?.isLeader() ?? false) : !signal.aborted),
    done,
  };
}

/** Runs the operator until `deps.signal` aborts. */
export async function runOperator(deps: RunOperatorDeps): Promise<void> {
  await startOperator(deps).done;
}
