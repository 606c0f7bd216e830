import type * as k8s from '@kubernetes/client-node';

import { abortError, kubeCallOptions, type CallOptions } from '../abort';
import { apiStatus } from '../api-errors';
import { clientNode, type KubeAccess } from '../kube-config';
import { kubeJson } from '../kube-http';
import {
  buildSessionClusterRole,
  buildSessionClusterRoleBinding,
  buildSessionKubeconfig,
  buildSessionServiceAccount,
  buildShellPod,
  isSessionId,
  sessionIdentityProblem,
  shellLabels,
  shellObjectName,
  SHELL_LABELS,
  type ShellPodInput,
} from './shell-objects';
import { PodWatch } from './pod-watch';

export interface ProvisionInput extends Omit<ShellPodInput, 'namespace'> {
  namespace: string;
  subject: string;
  /** apiserver URL as seen from inside the cluster */
  server: string;
  caPem: string;
  /** token lifetime; covers the maximum session length */
  tokenSeconds: number;
  podStartTimeoutMs: number;
}

export const PROVISION_PHASES = [
  'identity',
  'secret',
  'token',
  'kubeconfig',
  'pod',
  'scheduled',
  'starting',
  'ready',
] as const;
export type ProvisionPhase = (typeof PROVISION_PHASES)[number];

/** A phase name as an agent reports it (progress events are checked before use). */
export function isProvisionPhase(v: string): v is ProvisionPhase {
  return (PROVISION_PHASES as readonly string[]).includes(v);
}

export class ProvisionError extends Error {
  constructor(
    message: string,
    readonly phase: ProvisionPhase,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ProvisionError';
  }
}

function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      return body;
    }
  }
  if (body !== null && typeof body === 'object' && 'message' in body) return String(body.message);
  return (err as Error).message;
}

/** deadline of each raw apiserver call of teardown and the reaper */
const RAW_CALL_TIMEOUT_MS = 30_000;
const RBAC_PATH = '/apis/rbac.authorization.k8s.io/v1';

export type ProvisionerLog = (fields: Record<string, unknown>, message: string) => void;

/** A failed step, tagged with the phase it belongs to. */
function inPhase<T>(phase: ProvisionPhase, p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { provisionPhase: phase });
  });
}

/**
 * Creates and removes the Kubernetes objects of one cluster-shell session, as the provisioner's
 * own identity: the session's own identity (ServiceAccount, a ClusterRole that may impersonate
 * only this operator, tier and session, its ClusterRoleBinding) beside the Secret → a token for
 * that ServiceAccount bound to the Secret → kubeconfig into it → Pod → Running and Ready. Any
 * failure removes what was created and says why.
 */
export class ShellProvisioner {
  private apis: { core: k8s.CoreV1Api; rbac: k8s.RbacAuthorizationV1Api } | undefined;
  private readonly log: ProvisionerLog;

  constructor(
    private readonly kc: KubeAccess,
    opts: { log?: ProvisionerLog } = {},
  ) {
    this.log = opts.log ?? (() => undefined);
  }

  /**
   * client-node's API clients, made on first use: teardown and the reaper use raw calls
   * (kube-http.ts), so an agent that only sweeps never loads client-node (≈ 26 MiB of heap).
   */
  private get core(): k8s.CoreV1Api {
    return this.clients().core;
  }

  private get rbac(): k8s.RbacAuthorizationV1Api {
    return this.clients().rbac;
  }

  private clients(): { core: k8s.CoreV1Api; rbac: k8s.RbacAuthorizationV1Api } {
    const lib = clientNode();
    this.apis ??= {
      core: this.kc.makeApiClient(lib.CoreV1Api),
      rbac: this.kc.makeApiClient(lib.RbacAuthorizationV1Api),
    };
    return this.apis;
  }

  /**
   * `call.signal` (the caller's deadline) aborts the steps' apiserver calls and the wait for Ready;
   * what was created is then removed as after any failure. Every apiserver call, the removal
   * included, carries `call.requestId` as its `Audit-ID`.
   */
  async provision(
    i: ProvisionInput,
    onPhase: (phase: ProvisionPhase, message: string) => void = () => undefined,
    call: CallOptions = {},
  ): Promise<{ name: string; tokenExpiresAt: Date }> {
    const o = kubeCallOptions(call);
    const name = shellObjectName(i.sessionId);
    const ns = i.namespace;
    const refused = sessionIdentityProblem(i.subject, i.tier);
    if (refused !== undefined)
      throw new ProvisionError(`refusing to build a session identity: ${refused}`, 'identity');
    let phase: ProvisionPhase = 'secret';
    let expiresAt = new Date();
    onPhase('secret', `creating Secret ${ns}/${name}`);
    onPhase('identity', `creating ServiceAccount ${ns}/${name}, ClusterRole and ClusterRoleBinding ${name}`);
    // The role and its binding take longest (Kubernetes checks each against the provisioner's own
    // rights, and the binding against the role it names, so the role goes first). Nothing but the
    // operator's first kubectl call needs them, so they are made while the token is minted and the
    // pod starts, and awaited before the session is handed over.
    const access = inPhase(
      'identity',
      this.rbac
        .createClusterRole({ body: buildSessionClusterRole(i) }, o)
        .then(() => this.rbac.createClusterRoleBinding({ body: buildSessionClusterRoleBinding(i) }, o)),
    );
    // A failed identity stops the pod path at its next step (and its wait for Ready) at once.
    let accessError: Error | undefined;
    const accessSettled = access.then(
      () => undefined,
      (err: unknown) => {
        accessError = err as Error; // inPhase rejects with Errors only
      },
    );
    const stopIfAccessFailed = (): void => {
      if (accessError !== undefined) throw accessError;
    };
    try {
      // All settled before going on: a failure must not tear down while a create is in flight.
      const [secretResult, accountResult] = await Promise.allSettled([
        inPhase(
          'secret',
          this.core.createNamespacedSecret(
            {
              namespace: ns,
              body: {
                apiVersion: 'v1',
                kind: 'Secret',
                metadata: { name, namespace: ns, labels: shellLabels(i.sessionId, i.tier, i.extraLabels) },
                type: 'Opaque',
              },
            },
            o,
          ),
        ),
        inPhase(
          'identity',
          this.core.createNamespacedServiceAccount({ namespace: ns, body: buildSessionServiceAccount(i) }, o),
        ),
      ]);
      if (secretResult.status === 'rejected') throw secretResult.reason;
      if (accountResult.status === 'rejected') throw accountResult.reason;
      stopIfAccessFailed();
      const secret = secretResult.value;
      phase = 'token';
      onPhase('token', `requesting a token for ServiceAccount ${ns}/${name}`);
      const token = await this.requestToken(i, secret.metadata?.uid ?? '', call);
      stopIfAccessFailed();
      phase = 'kubeconfig';
      onPhase('kubeconfig', 'writing the session kubeconfig');
      await this.writeKubeconfig(i, token.token, secret, call);
      expiresAt = token.expiresAt;
      stopIfAccessFailed();
      phase = 'pod';
      onPhase('pod', `creating Pod ${ns}/${name}`);
      await this.core.createNamespacedPod({ namespace: ns, body: buildShellPod(i) }, o);
      stopIfAccessFailed();
      const ready = this.waitReady(
        ns,
        name,
        i.podStartTimeoutMs,
        (p, m) => {
          phase = p;
          onPhase(p, m);
        },
        call,
      );
      // Left behind when the identity fails first: teardown deletes the pod, which ends the wait.
      ready.catch(() => undefined);
      await Promise.race([ready, accessSettled.then(stopIfAccessFailed).then(() => ready)]);
      phase = 'identity';
      await access;
      return { name, tokenExpiresAt: expiresAt };
    } catch (caught) {
      await accessSettled;
      // Not bound to `signal`: what was made must go even when the caller stopped waiting.
      await this.teardown(ns, i.sessionId, { requestId: call.requestId }).catch(() => undefined);
      // The pod failing to start may just have been quicker than a failing identity: then the
      // identity is the cause to report (what an earlier step refused is reported as such).
      const err: unknown =
        caught instanceof ProvisionError && accessError !== undefined ? accessError : caught;
      if (err instanceof ProvisionError) throw err;
      phase = (err as { provisionPhase?: ProvisionPhase }).provisionPhase ?? phase;
      const status = apiStatus(err);
      throw new ProvisionError(
        `${phase} failed${status !== undefined ? ` (HTTP ${status})` : ''}: ${apiMessage(err)}`,
        phase,
        status,
      );
    }
  }

  /**
   * Waits for Running and Ready by watching the pod from the resourceVersion just read, so Ready
   * is noticed as soon as the apiserver has it (polling cost up to a period plus a re-check: ≈ 450 ms
   * of every open). A watch that ends or fails is re-opened after a fresh read; every wait is
   * bounded by the deadline. A container that dies right after Ready (`periscope-shell hold` does
   * not) is caught by the attach, which then fails with the exec's reason.
   */
  private async waitReady(
    ns: string,
    name: string,
    timeoutMs: number,
    onPhase: (phase: ProvisionPhase, message: string) => void,
    call: CallOptions,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const { signal } = call;
    const o = kubeCallOptions(call);
    let last = '';
    let pod = await this.core.readNamespacedPod({ name, namespace: ns }, o);
    const watch = new PodWatch(this.kc, ns, name, call.requestId);
    // An abort closes the watch, which ends its wait at once.
    const onAbort = (): void => {
      watch.close();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        if (signal?.aborted) throw abortError(signal, 'waiting for the session pod');
        const st = pod.status;
        const ready = st?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
        if (st?.phase === 'Running' && ready) {
          onPhase('ready', 'session pod is ready');
          return;
        }
        if (st?.phase === 'Failed' || st?.phase === 'Succeeded') {
          throw new ProvisionError(
            `the session pod ended before it was ready: ${await this.why(ns, name, pod, call.requestId)}`,
            'starting',
          );
        }
        const scheduled =
          st?.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'True') === true;
        const now = scheduled ? 'starting' : 'scheduled';
        // An image the node cannot pull (ErrImagePull, ImagePullBackOff) is said at once: the
        // open would otherwise only time out.
        const waiting = st?.containerStatuses?.find((c) =>
          /^(ErrImagePull|ImagePullBackOff)$/.test(c.state?.waiting?.reason ?? ''),
        )?.state?.waiting;
        const msg = !scheduled
          ? 'waiting for the pod to be scheduled'
          : waiting !== undefined
            ? `the shell image cannot be pulled: ${waiting.reason ?? ''} (${(waiting.message ?? 'no message').slice(0, 300)}); check the shell image repository and tag (chart value clusterShell.image) and that the node can reach the registry`
            : 'waiting for the shell container to start';
        if (msg !== last) {
          last = msg;
          onPhase(now, msg);
        }
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new ProvisionError(
            `the session pod was not ready within ${Math.round(timeoutMs / 1000)} s: ${await this.why(ns, name, pod, call.requestId)}`,
            now,
          );
        }
        const next = await watch.next(pod.metadata?.resourceVersion ?? '', Math.min(left, 10_000));
        if (next === 'deleted') {
          throw new ProvisionError('the session pod was deleted before it was ready', now, 404);
        }
        if (signal?.aborted) throw abortError(signal, 'waiting for the session pod');
        pod = next ?? (await this.core.readNamespacedPod({ name, namespace: ns }, o));
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      watch.close();
    }
  }

  /** The most telling reason a pod is not running, from its status and its events. */
  private async why(ns: string, name: string, pod: k8s.V1Pod, requestId?: string): Promise<string> {
    const reasons: string[] = [];
    if (!pod.spec?.nodeName && !(pod.status?.conditions ?? []).some((c) => c.type === 'PodScheduled')) {
      const sel = Object.entries(pod.spec?.nodeSelector ?? {}).map(([k, v]) => `${k}=${v}`);
      reasons.push(
        `not scheduled to any node${sel.length > 0 ? ` (nodeSelector ${sel.join(',')} may match no node)` : ''}`,
      );
    }
    for (const c of pod.status?.conditions ?? []) {
      if (c.status === 'False' && c.reason !== undefined)
        reasons.push(`${c.type}: ${c.reason}${c.message ? ` (${c.message})` : ''}`);
    }
    for (const cs of pod.status?.containerStatuses ?? []) {
      const w = cs.state?.waiting;
      const t = cs.state?.terminated;
      if (w?.reason !== undefined)
        reasons.push(`container ${cs.name}: ${w.reason}${w.message ? ` (${w.message})` : ''}`);
      if (t)
        reasons.push(
          `container ${cs.name} exited ${t.exitCode}${t.reason ? ` (${t.reason})` : ''}${t.message ? `: ${t.message}` : ''}`,
        );
    }
    try {
      const events = await this.core.listNamespacedEvent(
        { namespace: ns, fieldSelector: `involvedObject.name=${name}` },
        kubeCallOptions({ requestId }),
      );
      for (const e of events.items.filter((x) => x.type === 'Warning').slice(-3))
        reasons.push(`event ${e.reason ?? ''}: ${e.message ?? ''}`);
    } catch {
      // events are a bonus
    }
    return reasons.length > 0
      ? reasons.join('; ')
      : `phase ${pod.status?.phase ?? 'unknown'}, no reason reported`;
  }

  /** A token for the session's ServiceAccount, bound to the session Secret (dies with it). */
  private async requestToken(
    i: ProvisionInput,
    secretUid: string,
    call: CallOptions = {},
  ): Promise<{ token: string; expiresAt: Date }> {
    const name = shellObjectName(i.sessionId);
    const tr = await this.core.createNamespacedServiceAccountToken(
      {
        name,
        namespace: i.namespace,
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: {
            audiences: [],
            expirationSeconds: i.tokenSeconds,
            boundObjectRef: { kind: 'Secret', apiVersion: 'v1', name, uid: secretUid },
          },
        },
      },
      kubeCallOptions(call),
    );
    const token = tr.status?.token;
    if (!token) throw new Error('the apiserver returned no token');
    const exp = tr.status?.expirationTimestamp;
    return { token, expiresAt: exp ? new Date(exp) : new Date(Date.now() + i.tokenSeconds * 1000) };
  }

  private async writeKubeconfig(
    i: ProvisionInput,
    token: string,
    secret: k8s.V1Secret,
    call: CallOptions = {},
  ): Promise<void> {
    const name = shellObjectName(i.sessionId);
    await this.core.replaceNamespacedSecret(
      {
        name,
        namespace: i.namespace,
        body: {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: {
            name,
            namespace: i.namespace,
            labels: secret.metadata?.labels ?? {},
            resourceVersion: secret.metadata?.resourceVersion ?? '',
          },
          type: 'Opaque',
          stringData: {
            kubeconfig: buildSessionKubeconfig({
              server: i.server,
              caPem: i.caPem,
              token,
              subject: i.subject,
              tier: i.tier,
              sessionId: i.sessionId,
            }),
          },
        },
      },
      kubeCallOptions(call),
    );
  }

  /**
   * A fresh token for a live session, written into its Secret (the kubelet refreshes the mounted
   * file; kubectl reads it on every call). Used when the apiserver granted a shorter lifetime
   * than the session may last.
   */
  async rotateToken(i: ProvisionInput, call: CallOptions = {}): Promise<{ tokenExpiresAt: Date }> {
    const secret = await this.core.readNamespacedSecret(
      { name: shellObjectName(i.sessionId), namespace: i.namespace },
      kubeCallOptions(call),
    );
    const token = await this.requestToken(i, secret.metadata?.uid ?? '', call);
    await this.writeKubeconfig(i, token.token, secret, call);
    return { tokenExpiresAt: token.expiresAt };
  }

  /**
   * Deletes the session's Pod, Secret, ServiceAccount, ClusterRoleBinding and ClusterRole.
   * Idempotent: missing objects are fine. Every delete is tried; the first failure is thrown.
   * `call.signal` aborts the deletes still running (the next teardown or sweep finishes the job);
   * each delete carries `call.requestId` as its `Audit-ID`.
   */
  async teardown(ns: string, sessionId: string, call: CallOptions = {}): Promise<void> {
    const name = shellObjectName(sessionId);
    const ignore404 = (err: unknown): void => {
      if (apiStatus(err) !== 404) throw err;
    };
    const del = (path: string, what: string): Promise<void> =>
      kubeJson(this.kc, {
        method: 'DELETE',
        path,
        what: `deleting ${what}`,
        timeoutMs: RAW_CALL_TIMEOUT_MS,
        signal: call.signal,
        requestId: call.requestId,
      }).then(() => undefined, ignore404);
    const nsPath = `/api/v1/namespaces/${encodeURIComponent(ns)}`;
    const results = await Promise.allSettled([
      del(`${nsPath}/pods/${name}?gracePeriodSeconds=1`, `Pod ${ns}/${name}`),
      del(`${nsPath}/secrets/${name}`, `Secret ${ns}/${name}`),
      del(`${nsPath}/serviceaccounts/${name}`, `ServiceAccount ${ns}/${name}`),
      del(`${RBAC_PATH}/clusterrolebindings/${name}`, `ClusterRoleBinding ${name}`),
      del(`${RBAC_PATH}/clusterroles/${name}`, `ClusterRole ${name}`),
    ]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * The metadata of every object at `path` matching `labelSelector`, a page of 250 at a time (at
   * most 200 pages), so a large answer is never held at once.
   */
  private async listMetas(
    path: string,
    labelSelector: string,
    call: CallOptions,
  ): Promise<k8s.V1ObjectMeta[]> {
    const out: k8s.V1ObjectMeta[] = [];
    let cont = '';
    for (let page = 0; page < 200; page++) {
      const q = new URLSearchParams({ labelSelector, limit: '250' });
      if (cont !== '') q.set('continue', cont);
      const list = await kubeJson<{
        items?: { metadata?: k8s.V1ObjectMeta }[];
        metadata?: { continue?: string };
      }>(this.kc, {
        method: 'GET',
        path: `${path}?${q.toString()}`,
        what: `listing ${path}`,
        timeoutMs: RAW_CALL_TIMEOUT_MS,
        signal: call.signal,
        requestId: call.requestId,
      });
      for (const item of list.items ?? []) out.push(item.metadata ?? {});
      cont = list.metadata?.continue ?? '';
      if (cont === '') return out;
    }
    throw new Error(`listing ${path}: more than 50000 objects; not sweeping them`);
  }

  /**
   * Removes the objects of shell sessions that are not live and older than the grace period:
   * Pods, Secrets and ServiceAccounts in the shell namespace, and the ClusterRoles and
   * ClusterRoleBindings labelled with that namespace. An object whose session label is not a
   * session id is skipped (and logged); a list or a teardown that fails is logged and the sweep
   * goes on. Returns the session ids it removed. `call.signal` aborts the lists and stops the sweep
   * before its next teardown; every list and delete of the sweep carries `call.requestId`.
   */
  async reap(
    ns: string,
    isLive: (sessionId: string) => boolean,
    graceMs: number,
    now: number = Date.now(),
    call: CallOptions = {},
  ): Promise<string[]> {
    const { signal } = call;
    const selector = `${SHELL_LABELS.clusterShell}=true`;
    const clusterSelector = `${selector},${SHELL_LABELS.shellNamespace}=${ns}`;
    const nsPath = `/api/v1/namespaces/${encodeURIComponent(ns)}`;
    const lists: [string, Promise<k8s.V1ObjectMeta[]>][] = [
      ['pods', this.listMetas(`${nsPath}/pods`, selector, call)],
      ['secrets', this.listMetas(`${nsPath}/secrets`, selector, call)],
      ['serviceaccounts', this.listMetas(`${nsPath}/serviceaccounts`, selector, call)],
      ['clusterroles', this.listMetas(`${RBAC_PATH}/clusterroles`, clusterSelector, call)],
      ['clusterrolebindings', this.listMetas(`${RBAC_PATH}/clusterrolebindings`, clusterSelector, call)],
    ];
    const settled = await Promise.allSettled(lists.map(([kind, p]) => p.then((items) => ({ kind, items }))));
    const stale = new Set<string>();
    settled.forEach((r, idx) => {
      if (r.status === 'rejected') {
        const kind = lists[idx]?.[0];
        this.log(
          {
            kind,
            namespace: ns,
            err: apiMessage(r.reason),
            status: apiStatus(r.reason),
            rid: call.requestId,
          },
          'reaper could not list these shell objects; the next sweep tries again',
        );
        return;
      }
      const { kind, items } = r.value;
      for (const m of items) {
        const sid = m.labels?.[SHELL_LABELS.sessionId];
        if (sid === undefined) continue;
        if (!isSessionId(sid)) {
          this.log(
            { kind, name: m.name, namespace: m.namespace, sessionId: sid },
            'reaper skipped an object labelled as a shell object whose session id is not a UUID',
          );
          continue;
        }
        const created = m.creationTimestamp ? new Date(m.creationTimestamp).getTime() : now;
        if (!isLive(sid) && now - created >= graceMs) stale.add(sid);
      }
    });
    const removed: string[] = [];
    for (const sid of stale) {
      if (signal?.aborted) break;
      try {
        await this.teardown(ns, sid, call);
        removed.push(sid);
      } catch (err) {
        this.log(
          {
            sessionId: sid,
            namespace: ns,
            err: apiMessage(err),
            status: apiStatus(err),
            rid: call.requestId,
          },
          'reaper could not remove the objects of this session; the next sweep tries again',
        );
      }
    }
    return removed;
  }
}
