import type { CallOptions } from '../abort';
import { apiStatus } from '../api-errors';
import type { KubeAccess } from '../kube-config';
import { kubeJson } from '../kube-http';

/**
 * What the shell provisioner (the identity a direct gateway talks to the apiserver as) must be
 * allowed to do for cluster-shell sessions to work, and a check of it with
 * SelfSubjectRulesReview / SelfSubjectAccessReview: the server offers the shell on a direct cluster
 * only when nothing is missing, instead of discovering a missing install as an open-time failure.
 *
 * The list follows ShellProvisioner (shell-provisioner.ts: create, teardown, reap, the wait for
 * Ready, the exec) and the charts' provisioner role (charts/periscope-common/templates/
 * _cluster-shell.tpl, _rbac.tpl impersonator). Events (only used to explain a pod that does not
 * start) are not required.
 */

/** One access, as a SelfSubjectAccessReview asks it. `namespace` unset: cluster-wide. */
export interface AccessCheck {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

export interface ShellAccessRequirement extends AccessCheck {
  /** set when only sessions of this tier need it (impersonating the tier's group) */
  tier?: string;
}

/** A rule as SelfSubjectRulesReview returns it (RBAC semantics). */
export interface AccessRule {
  verbs: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
}

const IMPERSONATION_EXTRAS = ['audit.periscope.io/session-id', 'audit.periscope.io/actor'] as const;

/** Every access the provisioner needs for sessions of `tiers` in `namespace`. */
export function shellAccessRequirements(
  namespace: string,
  tiers: readonly string[],
): ShellAccessRequirement[] {
  const inNs = (resource: string, verbs: string[], subresource?: string): ShellAccessRequirement[] =>
    verbs.map((verb) => ({
      verb,
      group: '',
      resource,
      namespace,
      ...(subresource !== undefined ? { subresource } : {}),
    }));
  const rbac = (resource: string): ShellAccessRequirement[] =>
    ['create', 'delete', 'list'].map((verb) => ({ verb, group: 'rbac.authorization.k8s.io', resource }));
  return [
    // The session pod: create, wait for Ready (get + watch), delete; list for the reaper.
    ...inNs('pods', ['create', 'get', 'watch', 'delete', 'list']),
    // Attach and the command-log read (WebSocket exec is authorized as create by current apiservers).
    ...inNs('pods', ['create'], 'exec'),
    // The session Secret: created empty, the token bound to it, the kubeconfig written (update).
    ...inNs('secrets', ['create', 'get', 'update', 'delete', 'list']),
    // The session's own ServiceAccount and its bound token.
    ...inNs('serviceaccounts', ['create', 'delete', 'list']),
    ...inNs('serviceaccounts', ['create'], 'token'),
    // The session's ClusterRole and ClusterRoleBinding.
    ...rbac('clusterroles'),
    ...rbac('clusterrolebindings'),
    // Kubernetes lets the provisioner create a session role only with the rights it grants:
    // impersonating the operator (any user), the tier group and the audit extras.
    { verb: 'impersonate', group: '', resource: 'users' },
    ...tiers.map((tier) => ({
      verb: 'impersonate',
      group: '',
      resource: 'groups',
      name: `periscope-tier:${tier}`,
      tier,
    })),
    ...IMPERSONATION_EXTRAS.map((extra) => ({
      verb: 'impersonate',
      group: 'authentication.k8s.io',
      resource: `userextras/${extra}`,
    })),
  ];
}

/** Whether RBAC-style rules allow an access (what the RBAC authorizer does with one rule list). */
export function rulesAllow(rules: readonly AccessRule[], c: AccessCheck): boolean {
  const combined = c.subresource !== undefined ? `${c.resource}/${c.subresource}` : c.resource;
  return rules.some((r) => {
    if (!r.verbs.includes('*') && !r.verbs.includes(c.verb)) return false;
    const groups = r.apiGroups ?? [];
    if (!groups.includes('*') && !groups.includes(c.group)) return false;
    const resourceOk = (r.resources ?? []).some(
      (res) =>
        res === '*' || res === combined || (c.subresource !== undefined && res === `*/${c.subresource}`),
    );
    if (!resourceOk) return false;
    const names = r.resourceNames ?? [];
    return names.length === 0 || (c.name !== undefined && names.includes(c.name));
  });
}

/** "create pods/exec in namespace x", "impersonate groups periscope-tier:admin", … */
export function describeAccess(c: AccessCheck): string {
  const what = c.subresource !== undefined ? `${c.resource}/${c.subresource}` : c.resource;
  const group = c.group !== '' && !c.resource.startsWith('userextras/') ? `.${c.group}` : '';
  const name = c.name !== undefined ? ` ${c.name}` : '';
  const where = c.namespace !== undefined ? ` in namespace ${c.namespace}` : '';
  return `${c.verb} ${what}${group}${name}${where}`;
}

/**
 * The missing accesses grouped for a message: verbs of one resource together
 * ("create, delete pods in namespace x; impersonate groups periscope-tier:admin").
 */
export function summarizeMissing(missing: readonly AccessCheck[]): string {
  const byTarget = new Map<string, { verbs: string[]; sample: AccessCheck }>();
  for (const m of missing) {
    const key = describeAccess({ ...m, verb: '' });
    const entry = byTarget.get(key);
    if (entry) {
      if (!entry.verbs.includes(m.verb)) entry.verbs.push(m.verb);
    } else byTarget.set(key, { verbs: [m.verb], sample: m });
  }
  return [...byTarget.values()]
    .map(({ verbs, sample }) => describeAccess({ ...sample, verb: verbs.join(', ') }))
    .join('; ');
}

export interface ShellAccessResult {
  /** the identity the checks ran as (SelfSubjectReview), when the apiserver said */
  username?: string;
  /** the shell namespace does not exist (only known when the rights to create in it are there) */
  namespaceMissing: boolean;
  missing: ShellAccessRequirement[];
  /** SelfSubjectAccessReviews made for what the rules review did not show */
  accessReviews: number;
}

/** SelfSubjectAccessReviews at once, at most. */
const REVIEW_CONCURRENCY = 4;
/** the deadline of each review call (the caller's signal may end them sooner) */
const REVIEW_TIMEOUT_MS = 30_000;
const PROBE_SECRET = 'periscope-shell-readiness-probe';

/**
 * Checks the provisioner's rights for the shell on the cluster `kc` points at, as that identity.
 * One SelfSubjectRulesReview of the shell namespace answers most clusters; what its rules do not
 * show (or all of it, when the review fails or is incomplete, as with webhook authorizers) is asked
 * one SelfSubjectAccessReview at a time, which is authoritative. When the namespaced rights are
 * there, a server-side dry-run create of a Secret tells whether the namespace exists. `opts.signal`
 * aborts every call. Throws when the apiserver cannot be asked at all.
 */
export async function checkShellAccess(
  kc: KubeAccess,
  input: { namespace: string; tiers: readonly string[] },
  opts: CallOptions = {},
): Promise<ShellAccessResult> {
  const signal = opts.signal;
  // Raw calls (kube-http.ts): a server whose direct clusters are only checked and exec'd into
  // never loads @kubernetes/client-node for it.
  const post = <T>(path: string, body: unknown, what: string): Promise<T> =>
    kubeJson<T>(kc, {
      method: 'POST',
      path,
      body,
      timeoutMs: REVIEW_TIMEOUT_MS,
      what,
      ...(signal !== undefined ? { signal } : {}),
      ...(opts.requestId !== undefined ? { requestId: opts.requestId } : {}),
    });
  const requirements = shellAccessRequirements(input.namespace, input.tiers);
  const [who, rules] = await Promise.all([
    post<{ status?: { userInfo?: { username?: string } } }>(
      '/apis/authentication.k8s.io/v1/selfsubjectreviews',
      { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
      'asking who the provisioner is (SelfSubjectReview)',
    ).then(
      (r) => r.status?.userInfo?.username,
      () => undefined,
    ),
    post<{ status?: { resourceRules?: AccessRule[] } }>(
      '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews',
      {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SelfSubjectRulesReview',
        spec: { namespace: input.namespace },
      },
      `listing the provisioner's rules in ${input.namespace} (SelfSubjectRulesReview)`,
    ).then(
      (r) => r.status?.resourceRules ?? [],
      (err: unknown) => {
        // Aborted, or unreachable: the access reviews would fail the same way.
        if (signal?.aborted === true || apiStatus(err) === undefined) throw err;
        return [];
      },
    ),
  ]);
  const unsure = requirements.filter((r) => !rulesAllow(rules, r));
  const missing: ShellAccessRequirement[] = [];
  for (let i = 0; i < unsure.length; i += REVIEW_CONCURRENCY) {
    const batch = unsure.slice(i, i + REVIEW_CONCURRENCY);
    const allowed = await Promise.all(
      batch.map((c) =>
        post<{ status?: { allowed?: boolean } }>(
          '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
          {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: {
              resourceAttributes: {
                verb: c.verb,
                group: c.group,
                resource: c.resource,
                ...(c.subresource !== undefined ? { subresource: c.subresource } : {}),
                ...(c.namespace !== undefined ? { namespace: c.namespace } : {}),
                ...(c.name !== undefined ? { name: c.name } : {}),
              },
            },
          },
          `asking whether the provisioner may ${c.verb} ${c.resource} (SelfSubjectAccessReview)`,
        ).then((r) => r.status?.allowed === true),
      ),
    );
    batch.forEach((c, idx) => {
      if (allowed[idx] !== true) missing.push(c);
    });
  }
  let namespaceMissing = false;
  if (!missing.some((m) => m.namespace !== undefined)) {
    namespaceMissing = await post(
      `/api/v1/namespaces/${encodeURIComponent(input.namespace)}/secrets?dryRun=All`,
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: PROBE_SECRET, namespace: input.namespace },
        type: 'Opaque',
      },
      `a dry-run create of a Secret in ${input.namespace}`,
    ).then(
      () => false,
      (err: unknown) => {
        if (signal?.aborted === true) throw err;
        return apiStatus(err) === 404;
      },
    );
  }
  return {
    ...(who !== undefined && who !== '' ? { username: who } : {}),
    namespaceMissing,
    missing,
    accessReviews: unsure.length,
  };
}
