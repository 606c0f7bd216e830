import { summarizeMissing, type ShellAccessResult } from '@periscope/cluster-ops';

import type { ClusterEntry } from '../config/clusters-file';

/**
 * Whether a direct cluster (in-cluster, kubeconfig, eks) is ready for cluster-shell sessions:
 * the pure rules (what the access check found → what the operator is told). The service
 * (shell-readiness.service.ts) runs the checks and keeps the results.
 */
export type ShellReadiness =
  /** not checked yet, or the last check failed (the apiserver unreachable): the shell stays offered */
  | { state: 'unknown'; checkedAt?: number; error?: string }
  | { state: 'ready'; checkedAt: number }
  | {
      state: 'missing';
      checkedAt: number;
      /** what every session needs and is missing; undefined when only some tiers miss something */
      reason?: string;
      /** tier → what sessions of that tier need and is missing */
      tiers: Record<string, string>;
    };

export const DOCS_ANCHOR = 'docs/cluster-shell.md#rbac-for-direct-clusters';

/** A subject for the RBAC install, from the username the apiserver reported. */
export function provisionerSubject(username: string | undefined): {
  kind: 'ServiceAccount' | 'User';
  name: string;
  namespace?: string;
} {
  const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username ?? '');
  if (sa?.[1] !== undefined && sa[2] !== undefined)
    return { kind: 'ServiceAccount', name: sa[2], namespace: sa[1] };
  return { kind: 'User', name: username ?? '<the user of the server’s kubeconfig>' };
}

/** The documented install step of the missing RBAC, for this backend and identity. */
export function installHint(
  backend: ClusterEntry['backend'],
  namespace: string,
  tiers: readonly string[],
  username: string | undefined,
): string {
  const tierList = `{${tiers.join(',')}}`;
  if (backend === 'in-cluster')
    return (
      `set clusterShell.enabled=true (clusterShell.namespace=${namespace}, clusterShell.tiers=${tierList}) on the ` +
      `periscope chart, which installs it for the server's ServiceAccount (${DOCS_ANCHOR})`
    );
  const s = provisionerSubject(username);
  const subject =
    `--set provisioner.subject.kind=${s.kind} --set provisioner.subject.name=${s.name}` +
    (s.namespace !== undefined ? ` --set provisioner.subject.namespace=${s.namespace}` : '');
  return (
    `helm template periscope-agent-rbac charts/periscope-agent --set mode=rbac-only ${subject} ` +
    `--set clusterShell.enabled=true --set clusterShell.namespace=${namespace} --set clusterShell.tiers='${tierList}' ` +
    `… | kubectl apply -f - against that cluster (${DOCS_ANCHOR})`
  );
}

/** The readiness of one cluster from one access check. */
export function readinessFromAccess(
  cluster: { name: string; backend: ClusterEntry['backend'] },
  shell: { namespace: string; tiers: readonly string[] },
  access: ShellAccessResult,
  now: number,
): ShellReadiness {
  const who = access.username !== undefined ? ` (as ${access.username})` : '';
  const hint = installHint(cluster.backend, shell.namespace, shell.tiers, access.username);
  const common = access.missing.filter((m) => m.tier === undefined);
  const parts: string[] = [];
  // What every session misses, with the tiers' own gaps named too (one install fixes all).
  if (common.length > 0) parts.push(`cannot ${summarizeMissing(access.missing)}`);
  if (access.namespaceMissing) parts.push(`namespace ${shell.namespace} does not exist`);
  const tiers: Record<string, string> = {};
  for (const tier of shell.tiers) {
    const mine = access.missing.filter((m) => m.tier === tier);
    if (mine.length > 0)
      tiers[tier] =
        `cluster-shell RBAC missing on ${cluster.name} for tier ${tier}${who}: cannot ${summarizeMissing(mine)}; install with ${hint}`;
  }
  if (parts.length === 0 && Object.keys(tiers).length === 0) return { state: 'ready', checkedAt: now };
  return {
    state: 'missing',
    checkedAt: now,
    ...(parts.length > 0
      ? {
          reason: `cluster-shell RBAC missing on ${cluster.name}${who}: ${parts.join('; ')}; install with ${hint}`,
        }
      : {}),
    tiers,
  };
}

/**
 * Why a person of `tier` cannot open a shell on the cluster, or undefined when they may (or when
 * it is not known: an unchecked cluster is offered, and a failed open says why).
 */
export function readinessRefusal(
  r: ShellReadiness | undefined,
  tier: string | undefined,
): string | undefined {
  if (r?.state !== 'missing') return undefined;
  if (r.reason !== undefined) return r.reason;
  if (tier !== undefined) return r.tiers[tier];
  return undefined;
}

/**
 * Whether a cached result is worth checking again now that someone asks: only a refusal (a
 * ready cluster is kept fresh by the interval), only once it is older than `floorMs`.
 */
export function recheckDue(r: ShellReadiness | undefined, now: number, floorMs: number): boolean {
  return r?.state === 'missing' && now - r.checkedAt >= floorMs;
}

/** The backends whose shell RBAC the server checks itself (an agent installs and reports its own). */
export function isDirectBackend(backend: ClusterEntry['backend']): boolean {
  return backend !== 'agent';
}
