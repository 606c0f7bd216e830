import type { KubeAccess } from './kube-config';

import { KubeHttpError, kubeJson, kubeWatch, type KubeWatchEvent } from './kube-http';

/** Label every tier RBAC object carries; the binder only ever touches RoleBindings with it. */
export const TIER_RBAC_LABEL = 'periscope.io/purpose';
export const TIER_RBAC_PURPOSE = 'tier-rbac';

/**
 * The RoleBindings the tier binder keeps in every namespace that is not protected: the
 * write-capable tiers to the built-in ClusterRole `edit`. Cluster-wide, `edit` would also hold in
 * Periscope's own namespaces, where it reads session Secrets and the agent's state Secret, mints
 * ServiceAccount tokens and impersonates ServiceAccounts — none of which admission can refuse.
 */
export const TIER_EDIT_BINDINGS = [
  { name: 'periscope-tier-write', tier: 'write' },
  { name: 'periscope-tier-maintain-edit', tier: 'maintain' },
] as const;

const RBAC = 'rbac.authorization.k8s.io';

interface RoleBindingObject {
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  roleRef?: { apiGroup?: string; kind?: string; name?: string };
  subjects?: { apiGroup?: string; kind?: string; name?: string; namespace?: string }[];
}

interface NamespaceObject {
  metadata?: { name?: string; resourceVersion?: string };
  status?: { phase?: string };
}

interface PolicyObject {
  spec?: {
    matchConstraints?: {
      namespaceSelector?: { matchExpressions?: { key?: string; operator?: string; values?: string[] }[] };
    };
  };
}

interface ListOf<T> {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: T[];
}

/** The RoleBinding of one tier in one namespace, as the binder creates it. */
export function tierRoleBinding(
  namespace: string,
  binding: (typeof TIER_EDIT_BINDINGS)[number],
): RoleBindingObject & { apiVersion: string; kind: string } {
  return {
    apiVersion: `${RBAC}/v1`,
    kind: 'RoleBinding',
    metadata: {
      name: binding.name,
      namespace,
      labels: {
        [TIER_RBAC_LABEL]: TIER_RBAC_PURPOSE,
        'periscope.io/tier': binding.tier,
        'app.kubernetes.io/managed-by': 'periscope-tier-binder',
      },
    },
    roleRef: { apiGroup: RBAC, kind: 'ClusterRole', name: 'edit' },
    subjects: [{ apiGroup: RBAC, kind: 'Group', name: `periscope-tier:${binding.tier}` }],
  };
}

/** True when an existing binding grants exactly what the binder's would (nothing more, nothing else). */
function grantsExactly(rb: RoleBindingObject, binding: (typeof TIER_EDIT_BINDINGS)[number]): boolean {
  const s = rb.subjects ?? [];
  return (
    rb.roleRef?.kind === 'ClusterRole' &&
    rb.roleRef.name === 'edit' &&
    s.length === 1 &&
    s[0]?.kind === 'Group' &&
    s[0].name === `periscope-tier:${binding.tier}`
  );
}

export interface TierBindingPlan {
  create: { namespace: string; binding: (typeof TIER_EDIT_BINDINGS)[number] }[];
  /** `reason`: in a protected namespace, or altered (re-created after the delete) */
  delete: { namespace: string; name: string; reason: 'protected' | 'altered' }[];
}

/**
 * What to change so that every namespace but the protected (and terminating) ones has exactly
 * the binder's RoleBindings. `existing` holds the labelled RoleBindings found; others are never
 * touched, even when they carry a binder name.
 */
export function planTierBindings(
  namespaces: readonly { name: string; terminating: boolean }[],
  existing: readonly RoleBindingObject[],
  protectedNamespaces: ReadonlySet<string>,
): TierBindingPlan {
  const plan: TierBindingPlan = { create: [], delete: [] };
  const kept = new Set<string>();
  for (const rb of existing) {
    const namespace = rb.metadata?.namespace ?? '';
    const binding = TIER_EDIT_BINDINGS.find((b) => b.name === rb.metadata?.name);
    if (binding === undefined || namespace === '') continue;
    if (protectedNamespaces.has(namespace)) {
      plan.delete.push({ namespace, name: binding.name, reason: 'protected' });
    } else if (!grantsExactly(rb, binding)) {
      plan.delete.push({ namespace, name: binding.name, reason: 'altered' });
    } else kept.add(`${namespace}/${binding.name}`);
  }
  for (const ns of namespaces) {
    if (ns.terminating || protectedNamespaces.has(ns.name)) continue;
    for (const binding of TIER_EDIT_BINDINGS)
      if (!kept.has(`${ns.name}/${binding.name}`)) plan.create.push({ namespace: ns.name, binding });
  }
  return plan;
}

/** Where the binder reports; a pino logger fits. */
export interface TierBinderLog {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** Hooks for metrics. */
export interface TierBinderObserver {
  changed?(action: 'created' | 'deleted'): void;
  failed?(op: 'list' | 'watch' | 'create' | 'delete'): void;
  synced?(summary: { namespaces: number; bindings: number; durationMs: number }): void;
}

export interface TierBinderOptions {
  /**
   * Namespaces that never get a binding, and lose any found there. Each sync adds the namespaces
   * of every Periscope namespace-protection policy in the cluster (label
   * periscope.io/purpose=namespace-protection), so a server and an agent installed side by side
   * leave each other's namespaces alone.
   */
  protectedNamespaces: readonly string[];
  log: TierBinderLog;
  observer?: TierBinderObserver;
  /** deadline of every apiserver call except the watch (default 15 s) */
  callTimeoutMs?: number;
  /** length of one namespace watch; each ends with a full re-list (default 300 s) */
  watchSeconds?: number;
  /** at most this many namespaces are listed (default 10 000) */
  maxNamespaces?: number;
  /** namespaces waiting for their bindings while a watch runs; more end the watch early (default 1000) */
  maxQueued?: number;
  /** back-off after a failed sync: doubles from min to max (default 1 s → 60 s) */
  retryMs?: { min: number; max: number };
}

export interface TierBinderStatus {
  running: boolean;
  /** the protected namespaces of the last sync: configured, plus those of the policies found */
  protectedNamespaces: string[];
  /** when the last full sync finished */
  lastSyncAt: Date | undefined;
  lastError: string | undefined;
  namespaces: number;
  bindings: number;
  created: number;
  deleted: number;
  errors: number;
}

/**
 * Keeps the write-capable tiers' `edit` RoleBindings in every namespace except Periscope's own
 * (design §10): lists namespaces and the labelled RoleBindings, creates what is missing, deletes
 * bindings found in a protected namespace (or altered ones, which are then re-created), then
 * watches namespaces so a new one gets its bindings at once. Every watch end brings a full
 * re-list, so missed events and deleted bindings are repaired within `watchSeconds`. Every call
 * has a deadline; the queue of new namespaces is bounded.
 */
export class TierBinder {
  private readonly configured: ReadonlySet<string>;
  private protectedSet: ReadonlySet<string>;
  private policyListRefused = false;
  private readonly callTimeoutMs: number;
  private readonly watchSeconds: number;
  private readonly maxNamespaces: number;
  private readonly maxQueued: number;
  private readonly retry: { min: number; max: number };
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private wakeSleep: (() => void) | undefined;
  private readonly st: TierBinderStatus = {
    running: false,
    protectedNamespaces: [],
    lastSyncAt: undefined,
    lastError: undefined,
    namespaces: 0,
    bindings: 0,
    created: 0,
    deleted: 0,
    errors: 0,
  };
  private readonly syncWaiters = new Set<() => void>();

  constructor(
    private readonly kc: KubeAccess,
    private readonly opts: TierBinderOptions,
  ) {
    this.configured = new Set(opts.protectedNamespaces);
    this.protectedSet = this.configured;
    this.callTimeoutMs = opts.callTimeoutMs ?? 15_000;
    this.watchSeconds = opts.watchSeconds ?? 300;
    this.maxNamespaces = opts.maxNamespaces ?? 10_000;
    this.maxQueued = opts.maxQueued ?? 1000;
    this.retry = opts.retryMs ?? { min: 1000, max: 60_000 };
  }

  status(): TierBinderStatus {
    return { ...this.st, protectedNamespaces: [...this.st.protectedNamespaces] };
  }

  start(): void {
    if (this.loop) return;
    this.st.running = true;
    this.opts.log.info(
      { protectedNamespaces: [...this.configured], bindings: TIER_EDIT_BINDINGS.map((b) => b.name) },
      'tier binder started',
    );
    this.loop = this.run().finally(() => {
      this.st.running = false;
    });
  }

  /** Stops the loop; resolves once the call in flight (which has a deadline) has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wakeSleep?.();
    for (const w of this.syncWaiters) w();
    this.syncWaiters.clear();
    await this.loop;
  }

  /** Resolves after the next full sync finishes or the binder stops; rejects at `timeoutMs`. */
  nextSync(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.syncWaiters.delete(done);
        reject(new Error(`the tier binder did not finish a sync within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.syncWaiters.add(done);
    });
  }

  /** Read through a method: `stop()` flips it while the loop awaits. */
  private halted(): boolean {
    return this.stopped;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.halted()) {
      try {
        const resourceVersion = await this.syncAll();
        failures = 0;
        for (const w of this.syncWaiters) w();
        this.syncWaiters.clear();
        if (this.halted()) break;
        await this.watchNamespaces(resourceVersion);
      } catch (err) {
        if (this.halted()) break;
        failures++;
        this.st.errors++;
        this.st.lastError = (err as Error).message;
        const delay = Math.min(this.retry.max, this.retry.min * 2 ** Math.min(failures - 1, 16));
        this.opts.log.warn(
          { err: (err as Error).message, retryInMs: delay },
          'tier binder could not sync; retrying (check its RBAC: namespaces list/watch, rolebindings, bind on clusterrole edit)',
        );
        await this.sleep(delay);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSleep = done;
    }).finally(() => {
      this.wakeSleep = undefined;
    });
  }

  /** One full pass; returns the namespace list's resourceVersion to watch from. */
  async syncAll(): Promise<string> {
    const started = Date.now();
    this.protectedSet = new Set([...this.configured, ...(await this.policyNamespaces())]);
    this.st.protectedNamespaces = [...this.protectedSet].sort();
    const nsList = await this.listAll(
      '/api/v1/namespaces',
      'listing namespaces',
      this.maxNamespaces,
      (item) => {
        const n = item as NamespaceObject;
        return n.metadata?.name !== undefined
          ? { name: n.metadata.name, terminating: n.status?.phase === 'Terminating' }
          : undefined;
      },
    );
    const bindings = await this.listAll(
      `/apis/${RBAC}/v1/rolebindings?labelSelector=${encodeURIComponent(`${TIER_RBAC_LABEL}=${TIER_RBAC_PURPOSE}`)}`,
      'listing tier RoleBindings',
      this.maxNamespaces * TIER_EDIT_BINDINGS.length,
      (item) => item as RoleBindingObject,
    );
    const namespaces = nsList.items;
    const plan = planTierBindings(namespaces, bindings.items, this.protectedSet);
    let failed = 0;
    for (const d of plan.delete) {
      if (this.halted()) break;
      if (!(await this.remove(d.namespace, d.name, d.reason))) failed++;
    }
    for (const c of plan.create) {
      if (this.halted()) break;
      if (!(await this.create(c.namespace, c.binding, 'sync'))) failed++;
    }
    const durationMs = Date.now() - started;
    this.st.lastSyncAt = new Date();
    this.st.namespaces = namespaces.length;
    this.st.bindings = bindings.items.length - plan.delete.length + plan.create.length - failed;
    if (failed === 0) this.st.lastError = undefined;
    this.opts.observer?.synced?.({ namespaces: namespaces.length, bindings: this.st.bindings, durationMs });
    if (plan.create.length > 0 || plan.delete.length > 0 || failed > 0)
      this.opts.log.info(
        {
          namespaces: namespaces.length,
          created: plan.create.length - failed,
          deleted: plan.delete.length,
          failed,
          durationMs,
        },
        'tier bindings synced',
      );
    return nsList.resourceVersion;
  }

  /**
   * The namespaces Periscope's namespace-protection policies in this cluster cover (the `In`
   * values of their `kubernetes.io/metadata.name` selector). Without the right to list policies
   * (a chart that predates it) only the configured namespaces count.
   */
  private async policyNamespaces(): Promise<string[]> {
    let policies: { items: string[][] };
    try {
      policies = await this.listAll(
        `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies?labelSelector=${encodeURIComponent(`${TIER_RBAC_LABEL}=namespace-protection`)}`,
        'listing namespace-protection policies',
        256,
        (item) =>
          ((item as PolicyObject).spec?.matchConstraints?.namespaceSelector?.matchExpressions ?? []).flatMap(
            (e) =>
              e.key === 'kubernetes.io/metadata.name' && e.operator === 'In'
                ? (e.values ?? []).filter((v) => typeof v === 'string')
                : [],
          ),
      );
    } catch (err) {
      if (err instanceof KubeHttpError && (err.status === 403 || err.status === 404)) {
        if (!this.policyListRefused)
          this.opts.log.warn(
            { err: err.message },
            'tier binder cannot list ValidatingAdmissionPolicies; only its configured protected namespaces count',
          );
        this.policyListRefused = true;
        return [];
      }
      throw err;
    }
    return policies.items.flat();
  }

  /**
   * Every page of a list (bounded by `max`), each item turned into what the caller keeps by
   * `pick` (undefined drops it).
   */
  private async listAll<T>(
    path: string,
    what: string,
    max: number,
    pick: (item: unknown) => T | undefined,
  ): Promise<{ items: T[]; resourceVersion: string }> {
    const items: T[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    do {
      const sep = path.includes('?') ? '&' : '?';
      const page = await kubeJson<ListOf<unknown>>(this.kc, {
        method: 'GET',
        path: `${path}${sep}limit=500${cont !== undefined ? `&continue=${encodeURIComponent(cont)}` : ''}`,
        timeoutMs: this.callTimeoutMs,
        what,
      }).catch((err: unknown) => {
        this.opts.observer?.failed?.('list');
        throw err;
      });
      for (const item of page.items ?? []) {
        const kept = pick(item);
        if (kept !== undefined) items.push(kept);
      }
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
      cont = page.metadata?.continue !== '' ? page.metadata?.continue : undefined;
      if (items.length >= max) {
        this.opts.log.warn(
          { what, max },
          'tier binder: list cut at its bound; the rest waits for the next sync',
        );
        items.length = max;
        break;
      }
    } while (cont !== undefined && !this.halted());
    return { items, resourceVersion };
  }

  private async create(
    namespace: string,
    binding: (typeof TIER_EDIT_BINDINGS)[number],
    via: 'sync' | 'watch',
  ): Promise<boolean> {
    try {
      await kubeJson(this.kc, {
        method: 'POST',
        path: `/apis/${RBAC}/v1/namespaces/${encodeURIComponent(namespace)}/rolebindings`,
        body: tierRoleBinding(namespace, binding),
        timeoutMs: this.callTimeoutMs,
        what: `creating RoleBinding ${namespace}/${binding.name}`,
      });
      this.st.created++;
      this.opts.observer?.changed?.('created');
      if (via === 'watch') this.opts.log.info({ namespace, binding: binding.name }, 'tier binding created');
      return true;
    } catch (err) {
      const status = err instanceof KubeHttpError ? err.status : undefined;
      // From a watch event: the sync may have made it already. A namespace that is going away
      // refuses new objects (403/404); the next sync no longer lists it.
      if (via === 'watch' && (status === 409 || status === 404)) return true;
      if (status === 403 && /being terminated|is terminating/.test((err as Error).message)) return true;
      this.st.errors++;
      this.st.lastError = (err as Error).message;
      this.opts.observer?.failed?.('create');
      this.opts.log.warn(
        { namespace, binding: binding.name, status, err: (err as Error).message },
        status === 409
          ? 'a RoleBinding with the tier binder’s name exists without its label periscope.io/purpose=tier-rbac; delete it so the binder can manage it'
          : 'tier binding not created',
      );
      return false;
    }
  }

  private async remove(namespace: string, name: string, reason: 'protected' | 'altered'): Promise<boolean> {
    try {
      await kubeJson(this.kc, {
        method: 'DELETE',
        path: `/apis/${RBAC}/v1/namespaces/${encodeURIComponent(namespace)}/rolebindings/${encodeURIComponent(name)}`,
        timeoutMs: this.callTimeoutMs,
        what: `deleting RoleBinding ${namespace}/${name}`,
      });
      this.st.deleted++;
      this.opts.observer?.changed?.('deleted');
      this.opts.log.info(
        { namespace, binding: name, reason },
        reason === 'protected'
          ? 'tier binding removed from a protected namespace'
          : 'altered tier binding removed (it is re-created as the binder makes it)',
      );
      return true;
    } catch (err) {
      if (err instanceof KubeHttpError && err.status === 404) return true;
      this.st.errors++;
      this.st.lastError = (err as Error).message;
      this.opts.observer?.failed?.('delete');
      this.opts.log.warn(
        { namespace, binding: name, err: (err as Error).message },
        'tier binding not deleted',
      );
      return false;
    }
  }

  /**
   * Watches namespaces from `resourceVersion` for `watchSeconds`; each new namespace gets its
   * bindings at once (one at a time, from a bounded queue). Returns when the watch ends.
   */
  private async watchNamespaces(resourceVersion: string): Promise<void> {
    const queue = new Set<string>();
    // Shared with the event callback and the worker, which run while this awaits.
    const state: { watching: boolean; overflow: boolean; wake: (() => void) | undefined } = {
      watching: true,
      overflow: false,
      wake: undefined,
    };
    const local = new AbortController();
    const onStop = (): void => {
      local.abort();
    };
    this.abort.signal.addEventListener('abort', onStop);
    const worker = (async (): Promise<void> => {
      while (state.watching || queue.size > 0) {
        const next = queue.values().next();
        if (next.done === true) {
          await new Promise<void>((r) => (state.wake = r));
          state.wake = undefined;
          continue;
        }
        queue.delete(next.value);
        if (this.halted()) continue;
        for (const binding of TIER_EDIT_BINDINGS) await this.create(next.value, binding, 'watch');
      }
    })();
    const onEvent = (e: KubeWatchEvent): void => {
      if (e.type === 'ERROR') {
        // e.g. 410 Gone: the version is too old; re-list.
        local.abort();
        return;
      }
      if (e.type !== 'ADDED') return;
      const ns = e.object as NamespaceObject;
      const name = ns.metadata?.name;
      if (name === undefined || this.protectedSet.has(name) || ns.status?.phase === 'Terminating') return;
      if (queue.size >= this.maxQueued) {
        state.overflow = true;
        local.abort();
        return;
      }
      queue.add(name);
      state.wake?.();
    };
    const q = new URLSearchParams({
      watch: '1',
      timeoutSeconds: String(this.watchSeconds),
      allowWatchBookmarks: 'true',
      ...(resourceVersion !== '' ? { resourceVersion } : {}),
    });
    try {
      await kubeWatch(this.kc, `/api/v1/namespaces?${q.toString()}`, onEvent, {
        deadlineMs: this.watchSeconds * 1000 + this.callTimeoutMs,
        signal: local.signal,
        what: 'watching namespaces',
      });
    } catch (err) {
      this.opts.observer?.failed?.('watch');
      this.opts.log.warn({ err: (err as Error).message }, 'namespace watch ended with an error; re-listing');
    } finally {
      this.abort.signal.removeEventListener('abort', onStop);
      state.watching = false;
      state.wake?.();
      await worker;
    }
    if (state.overflow)
      this.opts.log.warn(
        { maxQueued: this.maxQueued },
        'too many new namespaces at once; re-listing instead',
      );
  }
}
