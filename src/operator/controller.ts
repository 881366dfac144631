import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../core/clock.js';
import { NotFoundError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { BackoffOptions, EventRecorder, KubeApi, KubeObject, ReconcileOutcome, ResourceRef } from '../kube/index.js';
import type { WatchRestartOptions } from '../kube/watch-restarts.js';
import { CoreResources, ResilientInformer, WorkQueue } from '../kube/index.js';
import type { PolicyRecorder, ReconcileRecorder } from '../metrics/recorders.js';
import type { GpuPassthrough, NodeGpuPassthrough, NodeLike } from '../api/v1alpha1/index.js';
import type { KubeVirtCr } from '../api/kubevirt.js';
import { isDeleting, isGpuPassthrough, isNodeGpuPassthrough } from '../api/v1alpha1/index.js';
import { KUBEVIRT, isKubeVirtCr } from '../api/kubevirt.js';
import { canonicalJson } from './canonical.js';
import { GPU_PASSTHROUGH_REF, NODE_GPU_PASSTHROUGH_REF } from '../api/v1alpha1/index.js';
import { WriteApplier } from './controller-apply.js';
import { decideFinalizer } from './finalizer.js';
import type { ClusterView, Write } from './plan.js';
import { orphanDeadline, reconcileKubeVirt, reconcileNode, reconcilePolicy } from './plan.js';
import { policyMatchesNode } from './select.js';

/**
 * The operator's runtime shell around the pure planner (plan.ts): informers on GpuPassthrough, Node,
 * NodeGpuPassthrough and — only while the `kubevirts.kubevirt.io` CRD exists — KubeVirt CRs; a keyed
 * work queue; and the writes. Nothing here decides anything the planner could decide.
 *
 * Keys: `policy/<name>`, `node/<name>`, `kubevirt`. Events only enqueue keys; every reconcile reads the
 * current state from the caches (level-triggered), and a periodic resync enqueues every key, because
 * informers can go quiet without an error (kubernetes-client/javascript#596).
 *
 *  - A Node or NodeGpuPassthrough change enqueues that node, and (batched) every policy that matches the
 *    node or holds a GPU there; a NodeGpuPassthrough change also enqueues `kubevirt` (batched).
 *  - A policy change enqueues the policy, `kubevirt`, and — when its spec, deletion or age changed — its
 *    nodes. Its own status writes therefore do not fan out to a thousand node reconciles.
 *
 * Informers run on every replica (a standby keeps warm caches for a fast takeover); only the leader runs
 * the queue workers (`lead`). The queue is rebuilt per leadership term: a stopped WorkQueue stays stopped.
 *
 * Read-your-writes: after a write the informer cache is stale until the watch delivers the change. A key
 * reconciled in that window would write the same thing again (one more request per node, and a duplicate
 * Event). So the object the API server returned is kept in an overlay and read instead of the cached one
 * while the cache still holds the version it had just before the write; any cache change ends it (the
 * cache may then be newer than our write, never older than what we read).
 */

export type OperatorKey = { readonly kind: 'policy' | 'node'; readonly name: string } | { readonly kind: 'kubevirt' };

export const KUBEVIRT_KEY = 'kubevirt';
export function policyKey(name: string): string {
  return `policy/${name}`;
}
export function nodeKey(name: string): string {
  return `node/${name}`;
}
export function parseKey(key: string): OperatorKey | undefined {
  if (key === KUBEVIRT_KEY) return { kind: 'kubevirt' };
  const slash = key.indexOf('/');
  const kind = key.slice(0, slash);
  const name = key.slice(slash + 1);
  if (slash < 0 || name === '' || (kind !== 'policy' && kind !== 'node')) return undefined;
  return { kind, name };
}

export interface OperatorControllerDeps {
  api: KubeApi;
  /** For the informers' watch streams (client-node's ListWatch needs it). */
  kubeConfig: KubeConfig;
  clock: Clock;
  logger: Logger;
  recorder: ReconcileRecorder & Partial<PolicyRecorder>;
  events: Pick<EventRecorder, 'event'>;
  /** Jitter source for backoffs; tests make it deterministic. */
  random?: () => number;
  /**
   * Fencing: whether this replica may still write (its Lease renewal is recent enough that no successor
   * can have taken over). Checked before every write; absent = always (no leader election).
   */
  mayWrite?: () => boolean;
}

export interface OperatorControllerOptions {
  /** Concurrent reconciles (of different keys). Default 8. */
  workers?: number;
  /** Every key is enqueued this often. Default 5 minutes; 0 disables. */
  resyncMs?: number;
  /** How often the KubeVirt CRD's presence is checked again. Default 60 s. */
  kubevirtCheckMs?: number;
  /**
   * Policy and `kubevirt` reconciles triggered by node-side changes wait this long, so a burst of agent
   * reports yields one status write instead of one per node. Default 250 ms.
   */
  batchMs?: number;
  /** Pacing of informer lists and watch restarts. Default: client-go's reflector (see WatchRestarts). */
  informerBackoff?: WatchRestartOptions;
  /** Per-key failure backoff. Default 5 ms doubling to 60 s. */
  queueBackoff?: BackoffOptions;
  /** A deleting policy waiting for agents is looked at again this often even without events. Default 10 s. */
  releasePollMs?: number;
  /** How long a NodeGpuPassthrough may exist without its Node before it is deleted as an orphan. Default 5 min. */
  orphanGraceMs?: number;
}

/** The queue name, also the `controller` label of the reconcile metrics. */
export const CONTROLLER_NAME = 'gpupassthrough';

interface Overlay {
  readonly object: KubeObject;
  /** The cached object's resourceVersion just before our write; the overlay is read only while the cache still holds it. */
  readonly baseRv: string | undefined;
}

type KubeVirtState = 'unknown' | 'absent' | 'present';

export class OperatorController {
  private readonly policies: ResilientInformer<GpuPassthrough & KubeObject>;
  private readonly nodes: ResilientInformer<NodeLike & KubeObject>;
  private readonly states: ResilientInformer<NodeGpuPassthrough & KubeObject>;
  private kubevirts: ResilientInformer<KubeVirtCr & KubeObject> | undefined;
  private kubevirtState: KubeVirtState = 'unknown';
  private readonly applier: WriteApplier;
  private readonly overlay = new Map<string, Overlay>();
  private readonly policyFingerprints = new Map<string, string>();
  private readonly nodeFingerprints = new Map<string, string>();
  private queue: WorkQueue | undefined;
  private started: AbortController | undefined;
  private readonly log: Logger;
  private readonly opts: Required<Omit<OperatorControllerOptions, 'informerBackoff' | 'queueBackoff' | 'orphanGraceMs'>> &
    Pick<OperatorControllerOptions, 'informerBackoff' | 'queueBackoff' | 'orphanGraceMs'>;

  constructor(
    private readonly deps: OperatorControllerDeps,
    options: OperatorControllerOptions = {},
  ) {
    this.opts = {
      workers: options.workers ?? 8,
      resyncMs: options.resyncMs ?? 5 * 60_000,
      kubevirtCheckMs: options.kubevirtCheckMs ?? 60_000,
      batchMs: options.batchMs ?? 250,
      releasePollMs: options.releasePollMs ?? 10_000,
      ...(options.informerBackoff ? { informerBackoff: options.informerBackoff } : {}),
      ...(options.queueBackoff ? { queueBackoff: options.queueBackoff } : {}),
      ...(options.orphanGraceMs !== undefined ? { orphanGraceMs: options.orphanGraceMs } : {}),
    };
    this.log = deps.logger.child({ controller: CONTROLLER_NAME });
    this.policies = this.informer(GPU_PASSTHROUGH_REF);
    this.nodes = this.informer(CoreResources.nodes);
    this.states = this.informer(NODE_GPU_PASSTHROUGH_REF);
    this.applier = new WriteApplier({ api: deps.api, events: deps.events });
    this.policies.on({
      add: (p) => this.onPolicy(p, 'add'),
      update: (p) => this.onPolicy(p, 'update'),
      delete: (p) => this.onPolicy(p, 'delete'),
    });
    this.nodes.on({
      add: (n) => this.onNode(n, false),
      update: (n) => this.onNode(n, false),
      delete: (n) => this.onNode(n, true),
    });
    this.states.on({
      add: (s) => this.onState(s, false),
      update: (s) => this.onState(s, false),
      delete: (s) => this.onState(s, true),
    });
  }

  private informer<T extends KubeObject>(resource: ResourceRef): ResilientInformer<T> {
    const { kubeConfig, api, clock, logger, random } = this.deps;
    return new ResilientInformer<T>(
      { kubeConfig, api, clock, logger, ...(random ? { random } : {}) },
      { resource, ...(this.opts.informerBackoff ? { backoff: this.opts.informerBackoff } : {}) },
    );
  }

  // ------------------------------------------------------------------ lifecycle

  /** Starts the informers and the KubeVirt CRD watch; returns at once. Runs until `stop` or `signal` aborts. */
  start(signal?: AbortSignal): void {
    if (this.started) throw new Error('controller already started');
    const started = new AbortController();
    this.started = started;
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    this.policies.start(started.signal);
    this.nodes.start(started.signal);
    this.states.start(started.signal);
    void this.kubevirtLoop(started.signal);
  }

  async stop(): Promise<void> {
    const s = this.started;
    if (!s || s.signal.aborted) return;
    s.abort(new Error('controller stopped'));
    await Promise.all([this.policies.stop(), this.nodes.stop(), this.states.stop(), this.kubevirts?.stop()]);
  }

  /**
   * The three informers have listed. KubeVirt is left out on purpose: a CRD check that keeps failing
   * (RBAC, a flaky apiextensions) must not make every replica unready; deletions wait for it instead.
   */
  hasSynced(): boolean {
    return this.policies.hasSynced() && this.nodes.hasSynced() && this.states.hasSynced();
  }

  async waitForSync(signal?: AbortSignal): Promise<void> {
    await Promise.all([this.policies.waitForSync(signal), this.nodes.waitForSync(signal), this.states.waitForSync(signal)]);
  }

  /** Whether queue workers are running (this replica leads). */
  isLeading(): boolean {
    return this.queue !== undefined;
  }

  /**
   * Runs the queue workers until `signal` aborts (leadership lost or shutdown): waits for the caches,
   * enqueues every key, resyncs periodically. Resolves once in-flight reconciles have finished.
   */
  async lead(signal: AbortSignal): Promise<void> {
    try {
      await this.waitForSync(signal);
    } catch {
      return; // aborted before the caches synced
    }
    if (signal.aborted) return;
    const { clock, logger, recorder, random } = this.deps;
    const queue = new WorkQueue(
      { clock, logger, recorder, ...(random ? { random } : {}) },
      { name: CONTROLLER_NAME, ...(this.opts.queueBackoff ? { backoff: this.opts.queueBackoff } : {}) },
    );
    this.queue = queue;
    this.log.info({}, 'reconciling');
    this.enqueueAll();
    void this.resyncLoop(queue, signal);
    try {
      await queue.run((key) => this.reconcile(key), { workers: this.opts.workers, signal });
    } finally {
      if (this.queue === queue) this.queue = undefined;
      this.log.info({}, 'stopped reconciling');
    }
  }

  private async resyncLoop(queue: WorkQueue, signal: AbortSignal): Promise<void> {
    if (this.opts.resyncMs <= 0) return;
    while (!signal.aborted) {
      try {
        await this.deps.clock.sleep(this.opts.resyncMs, signal);
      } catch {
        return;
      }
      if (this.queue === queue) this.enqueueAll();
    }
  }

  /** Enqueues every key the caches know of. */
  enqueueAll(): void {
    const q = this.queue;
    if (!q) return;
    for (const p of this.policies.list()) q.add(policyKey(p.metadata.name));
    for (const n of this.nodes.list()) q.add(nodeKey(n.metadata.name));
    // NodeGpuPassthroughs without a Node too: orphans are reported and cleaned up by their node key.
    for (const s of this.states.list()) q.add(nodeKey(s.metadata.name));
    q.add(KUBEVIRT_KEY);
  }

  // ------------------------------------------------------------------ KubeVirt CRD presence

  private async kubevirtLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.checkKubeVirtCrd(signal);
      try {
        await this.deps.clock.sleep(this.opts.kubevirtCheckMs, signal);
      } catch {
        return;
      }
    }
  }

  /** Starts the KubeVirt informer when the CRD appears and stops it when the CRD goes. */
  async checkKubeVirtCrd(signal: AbortSignal): Promise<void> {
    let present: boolean;
    try {
      await this.deps.api.get(CoreResources.customResourceDefinitions, KUBEVIRT.crdName);
      present = true;
    } catch (err) {
      if (!(err instanceof NotFoundError)) {
        // Unknown is not absent: keep what we had and look again next round.
        this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'checking for the KubeVirt CRD failed');
        return;
      }
      present = false;
    }
    if (signal.aborted) return;
    if (present && !this.kubevirts) {
      this.log.info({}, 'KubeVirt CRD found; registering resources with KubeVirt');
      const inf = this.informer<KubeVirtCr & KubeObject>(CoreResources.kubevirts);
      // Policies too: their Conflict condition reports KubeVirt entries that would serve our resources.
      const enqueue = (): void => {
        this.queue?.add(KUBEVIRT_KEY);
        for (const p of this.policies.list()) this.queue?.add(policyKey(p.metadata.name));
      };
      inf.on({ add: enqueue, update: enqueue, delete: enqueue });
      this.kubevirts = inf;
      inf.start(signal);
      // Policies being deleted wait for the KubeVirt cache before dropping their finalizer.
      void inf.waitForSync(signal).then(
        () => {
          this.queue?.add(KUBEVIRT_KEY);
          for (const p of this.policies.list()) if (isDeleting(p)) this.queue?.add(policyKey(p.metadata.name));
        },
        () => undefined,
      );
    } else if (!present && this.kubevirts) {
      this.log.info({}, 'KubeVirt CRD gone; no longer registering resources');
      const inf = this.kubevirts;
      this.kubevirts = undefined;
      await inf.stop();
    }
    const before = this.kubevirtState;
    this.kubevirtState = present ? 'present' : 'absent';
    if (before === 'unknown') for (const p of this.policies.list()) if (isDeleting(p)) this.queue?.add(policyKey(p.metadata.name));
  }

  // ------------------------------------------------------------------ events → keys

  private enqueueLater(key: string): void {
    this.queue?.addAfter(key, this.opts.batchMs);
  }

  private onPolicy(p: GpuPassthrough & KubeObject, how: 'add' | 'update' | 'delete'): void {
    const name = p.metadata.name;
    this.dropStaleOverlay(GPU_PASSTHROUGH_REF, name, p, how === 'delete');
    // What the nodes' desired specs depend on: not status, not finalizers.
    const fingerprint = canonicalJson([p.spec, isDeleting(p), p.metadata.creationTimestamp]);
    const changed = this.policyFingerprints.get(name) !== fingerprint;
    if (how === 'delete') {
      this.policyFingerprints.delete(name);
      this.deps.recorder.policyRemoved?.(name);
    } else {
      this.policyFingerprints.set(name, fingerprint);
    }
    const q = this.queue;
    if (!q) return;
    q.add(policyKey(name));
    if (!changed && how === 'update') return;
    for (const n of this.nodes.list()) {
      const state = this.states.get(n.metadata.name);
      if ((isGpuPassthrough(p) && policyMatchesNode(p, n)) || state?.spec?.gpus?.some((g) => g.policy === name)) q.add(nodeKey(n.metadata.name));
    }
    this.enqueueLater(KUBEVIRT_KEY);
  }

  private onNode(n: NodeLike & KubeObject, deleted: boolean): void {
    const name = n.metadata.name;
    this.dropStaleOverlay(CoreResources.nodes, name, n, deleted);
    const fingerprint = canonicalJson([n.metadata.labels ?? {}, isDeleting(n)]);
    const changed = this.nodeFingerprints.get(name) !== fingerprint;
    if (deleted) this.nodeFingerprints.delete(name);
    else this.nodeFingerprints.set(name, fingerprint);
    // Nodes change all the time (heartbeats in status); only labels and deletion matter here.
    if (!changed && !deleted) return;
    this.enqueueNodeAndPolicies(name, n, this.states.get(name));
  }

  private onState(s: NodeGpuPassthrough & KubeObject, deleted: boolean): void {
    const name = s.metadata.name;
    this.dropStaleOverlay(NODE_GPU_PASSTHROUGH_REF, name, s, deleted);
    this.enqueueNodeAndPolicies(name, this.nodes.get(name), s);
    this.enqueueLater(KUBEVIRT_KEY);
  }

  private enqueueNodeAndPolicies(name: string, node: NodeLike | undefined, state: NodeGpuPassthrough | undefined): void {
    const q = this.queue;
    if (!q) return;
    q.add(nodeKey(name));
    const holders = new Set((state?.spec?.gpus ?? []).map((g) => g.policy));
    for (const p of this.policies.list()) {
      if (holders.has(p.metadata.name) || (node && isGpuPassthrough(p) && policyMatchesNode(p, node))) this.enqueueLater(policyKey(p.metadata.name));
    }
  }

  // ------------------------------------------------------------------ read-your-writes overlay

  private overlayKey(res: ResourceRef, name: string, namespace?: string): string {
    return `${res.group}/${res.plural}/${namespace ?? ''}/${name}`;
  }

  private dropStaleOverlay(res: ResourceRef, name: string, cached: KubeObject, deleted: boolean, namespace?: string): void {
    const key = this.overlayKey(res, name, namespace);
    const o = this.overlay.get(key);
    if (o && (deleted || cached.metadata?.resourceVersion !== o.baseRv)) this.overlay.delete(key);
  }

  private fresh<T extends KubeObject>(res: ResourceRef, cached: T, namespace?: string): T {
    const name = cached.metadata?.name;
    if (name === undefined) return cached;
    const key = this.overlayKey(res, name, namespace);
    const o = this.overlay.get(key);
    if (!o) return cached;
    if (cached.metadata?.resourceVersion === o.baseRv) return o.object as T;
    this.overlay.delete(key);
    return cached;
  }

  /**
   * Keeps `written` as the object to read until the cache moves. Only when the cache still holds exactly
   * the version it held before the write (`rvBefore`): if it moved meanwhile, it may already be newer
   * than what we wrote (the agent answered fast), and an overlay would then hide that newer object.
   */
  private remember(res: ResourceRef, written: KubeObject, rvBefore: string | undefined): void {
    const name = written.metadata?.name;
    if (name === undefined || rvBefore === undefined) return;
    const namespace = written.metadata?.namespace;
    const now = this.cachedFor(res, name, namespace)?.metadata?.resourceVersion;
    if (now !== rvBefore || written.metadata?.resourceVersion === rvBefore) return;
    this.overlay.set(this.overlayKey(res, name, namespace), { object: written, baseRv: rvBefore });
  }

  // ------------------------------------------------------------------ views

  private policyList(): GpuPassthrough[] {
    const out: GpuPassthrough[] = [];
    for (const p of this.policies.list()) {
      const f = this.fresh(GPU_PASSTHROUGH_REF, p);
      if (isGpuPassthrough(f)) out.push(f);
      else this.log.debug({ policy: p.metadata?.name }, 'ignoring a malformed GpuPassthrough');
    }
    return out;
  }

  private stateOf(name: string): NodeGpuPassthrough | undefined {
    const s = this.states.get(name);
    if (!s) return undefined;
    const f = this.fresh(NODE_GPU_PASSTHROUGH_REF, s);
    return isNodeGpuPassthrough(f) ? f : undefined;
  }

  private nodeOf(name: string): NodeLike | undefined {
    const n = this.nodes.get(name);
    return n ? this.fresh(CoreResources.nodes, n) : undefined;
  }

  /** undefined: no KubeVirt CRD (or not known yet); null: CRD but no CR. */
  private kubevirtCr(): KubeVirtCr | null | undefined {
    const inf = this.kubevirts;
    if (this.kubevirtState !== 'present' || !inf || !inf.hasSynced()) return undefined;
    const crs = inf
      .list()
      .map((cr) => this.fresh(CoreResources.kubevirts, cr, cr.metadata?.namespace))
      .filter((cr) => isKubeVirtCr(cr) && !isDeleting(cr))
      .sort((a, b) => (`${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}` ? -1 : 1));
    return crs[0] ?? null;
  }

  /** Whether the KubeVirt CR may hold entries we have not seen yet (CRD check or cache still pending). */
  private kubevirtPending(): boolean {
    return this.kubevirtState === 'unknown' || (this.kubevirtState === 'present' && !(this.kubevirts?.hasSynced() ?? false));
  }

  /** A view of the whole cluster from the caches (and our own recent writes). */
  clusterView(): ClusterView {
    const states = new Map<string, NodeGpuPassthrough>();
    for (const s of this.states.list()) {
      const f = this.fresh(NODE_GPU_PASSTHROUGH_REF, s);
      if (isNodeGpuPassthrough(f)) states.set(f.metadata.name, f);
    }
    const kubevirt = this.kubevirtCr();
    return {
      policies: this.policyList(),
      nodes: this.nodes.list().map((n) => this.fresh(CoreResources.nodes, n)),
      states,
      ...(kubevirt !== undefined ? { kubevirt } : {}),
      now: this.deps.clock.now(),
    };
  }

  /** A node's reconcile depends only on the policies, that node and its own object: build just that. */
  private nodeView(name: string): ClusterView {
    const node = this.nodeOf(name);
    const state = this.stateOf(name);
    return {
      policies: this.policyList(),
      nodes: node ? [node] : [],
      states: state ? new Map([[name, state]]) : new Map(),
      now: this.deps.clock.now(),
      ...(this.opts.orphanGraceMs !== undefined ? { orphanGraceMs: this.opts.orphanGraceMs } : {}),
    };
  }

  // ------------------------------------------------------------------ reconcile

  /** One reconcile of `key`: plan from the caches, then apply the writes in order. */
  async reconcile(key: string): Promise<ReconcileOutcome | void> {
    const k = parseKey(key);
    if (!k) {
      this.log.warn({ key }, 'dropping an unknown key');
      return;
    }
    switch (k.kind) {
      case 'node': {
        const view = this.nodeView(k.name);
        await this.applyAll(reconcileNode(k.name, view));
        // A NodeGpuPassthrough without its Node: look again when its grace period ends (or the Node appears).
        const state = view.states.get(k.name);
        const deadline = state ? orphanDeadline(state, view.nodes[0], view.orphanGraceMs) : undefined;
        if (deadline !== undefined && deadline > this.deps.clock.now()) return { requeueAfterMs: deadline - this.deps.clock.now() + 1_000 };
        return;
      }
      case 'kubevirt':
        return this.applyAll(reconcileKubeVirt(this.clusterView()));
      case 'policy':
        return this.reconcilePolicyKey(k.name);
    }
  }

  private async reconcilePolicyKey(name: string): Promise<ReconcileOutcome | void> {
    const view = this.clusterView();
    const policy = view.policies.find((p) => p.metadata.name === name);
    if (!policy) return;
    const deleting = isDeleting(policy);
    if (deleting && this.kubevirtPending()) {
      // Dropping the finalizer now could leave our KubeVirt entries behind for good.
      return { requeueAfterMs: 1_000 };
    }
    const writes = reconcilePolicy(name, view);
    await this.applyAll(writes, policy);
    if (writes.some((w) => w.kind === 'removeFinalizer')) {
      // Gone (or going): a deleted policy must stop being reported, or its last Degraded would keep alerting.
      this.deps.recorder.policyRemoved?.(name);
      return;
    }
    const cached = this.policies.get(name);
    const status = (cached ? this.fresh(GPU_PASSTHROUGH_REF, cached) : policy).status;
    if (status) {
      this.deps.recorder.policy?.(name, {
        nodesDesired: status.nodesMatched ?? 0,
        nodesReady: status.nodesReady ?? 0,
        degraded: status.conditions?.some((c) => c.type === 'Degraded' && c.status === 'True') ?? false,
      });
    }
    if (deleting && decideFinalizer(policy, view.nodes, view.states).kind === 'waitForRelease') {
      return { requeueAfterMs: this.opts.releasePollMs };
    }
  }

  private cachedFor(res: ResourceRef, name: string, namespace?: string): KubeObject | undefined {
    if (res === NODE_GPU_PASSTHROUGH_REF) return this.states.get(name);
    if (res === CoreResources.nodes) return this.nodes.get(name);
    if (res === GPU_PASSTHROUGH_REF) return this.policies.get(name);
    return this.kubevirts?.get(name, namespace);
  }

  /** The object a write changes (none for Events). */
  private targetOf(w: Write): { res: ResourceRef; name: string; namespace?: string } | undefined {
    switch (w.kind) {
      case 'patchNodeSpec':
      case 'setNodeOwner':
      case 'deleteOrphan':
        return { res: NODE_GPU_PASSTHROUGH_REF, name: w.node };
      case 'labelNode':
        return { res: CoreResources.nodes, name: w.node };
      case 'patchPolicyStatus':
      case 'addFinalizer':
      case 'removeFinalizer':
        return { res: GPU_PASSTHROUGH_REF, name: w.policy };
      case 'updateKubeVirt':
        return { res: CoreResources.kubevirts, name: w.name, ...(w.namespace !== undefined ? { namespace: w.namespace } : {}) };
      case 'event':
        return undefined;
    }
  }

  private async applyAll(writes: readonly Write[], policy?: GpuPassthrough): Promise<void> {
    let previousStatus = policy?.status;
    for (const w of writes) {
      if (this.deps.mayWrite && !this.deps.mayWrite()) {
        // A leader paused past its lease (a long GC, a frozen VM) resumes here before its elector has
        // noticed: its successor may already be writing. Drop the rest; the successor reconciles it.
        this.log.warn({ write: w.kind }, 'lease not renewed in time: not writing (fenced)');
        return;
      }
      const target = this.targetOf(w);
      const rvBefore = target ? this.cachedFor(target.res, target.name, target.namespace)?.metadata?.resourceVersion : undefined;
      let written;
      try {
        written = await this.applier.apply(w, previousStatus);
      } catch (err) {
        // The object went away under us: its delete event enqueues whatever must follow. Not a failure.
        if (err instanceof NotFoundError) {
          this.log.debug({ write: w.kind, err: err.message }, 'object gone; skipping the rest of this reconcile');
          return;
        }
        throw err;
      }
      if (written && target) this.remember(target.res, written.object, rvBefore);
      if (w.kind === 'patchPolicyStatus') previousStatus = w.status;
      this.log.debug({ write: w.kind, name: target?.name }, 'applied');
    }
  }
}
