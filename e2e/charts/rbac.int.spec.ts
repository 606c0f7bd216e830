import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';

import * as k8s from '@kubernetes/client-node';
import {
  buildSessionClusterRole,
  checkShellAccess,
  shellAccessRequirements,
  buildSessionClusterRoleBinding,
  buildSessionServiceAccount,
  shellObjectName,
  TIER_EDIT_BINDINGS,
  tierRoleBinding,
} from '@periscope/cluster-ops';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { waitForShellPolicy } from '../cluster-ops/shell-cluster';
import { TestClusterClient } from '../k8s/cluster';
import { accessMismatches, allow, deny, operator, serviceAccount, type Expectation } from './access';
import { AGENT_REQUIRED, SHELL_EGRESS } from './cases';
import { parseManifests, render, type K8sObject } from './helm';

/**
 * The charts' RBAC against the real local apiserver: the rendered manifests must pass strict
 * server-side validation and apply, and then SubjectAccessReviews (plus real requests with real
 * tokens) must show each identity can do what it needs and nothing more.
 */
const cluster = new TestClusterClient(inject('cluster'));
const id = Date.now().toString(36);
const TIERS = ['read', 'triage', 'write', 'maintain', 'admin'];

const toStream = (objects: K8sObject[]): string => objects.map((o) => JSON.stringify(o)).join('\n');

/**
 * Applies a rendered chart the way helm orders it: namespaces first (a dry run of a Role in a
 * namespace that does not exist yet would fail), each part first as a strict server-side dry
 * run, then for real.
 */
async function applyRendered(manifests: string): Promise<K8sObject[]> {
  const objects = parseManifests(manifests);
  const namespaces = objects.filter((o) => o.kind === 'Namespace');
  const rest = objects.filter((o) => o.kind !== 'Namespace');
  for (const part of [namespaces, rest]) {
    if (part.length === 0) continue;
    const input = toStream(part);
    const dry = await cluster.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', '-'], {
      input,
    });
    expect(dry.stderr, 'server-side dry run').toBe('');
    expect(dry.code).toBe(0);
    await cluster.kubectlOk(['apply', '--validate=strict', '-f', '-'], { input });
  }
  return objects;
}

async function deleteClusterScoped(release: string): Promise<void> {
  await cluster.kubectl([
    'delete',
    'clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding',
    '-l',
    `app.kubernetes.io/instance=${release}`,
    '--ignore-not-found',
  ]);
}

async function tokenFor(namespace: string, sa: string): Promise<string> {
  return (await cluster.kubectlOk(['-n', namespace, 'create', 'token', sa, '--duration=1h'])).trim();
}

/** A pod that meets Pod Security "restricted", as the server builds session pods. */
function restrictedPod(namespace: string, name: string, serviceAccountName = 'default'): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: {
      serviceAccountName,
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'shell',
          image: 'registry.example.com/periscope/periscope-shell:0.1.0',
          command: ['sleep', '1'],
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          },
        },
      ],
    },
  });
}

/**
 * What every tier's binding must grant and withhold (admin only when bound). `ns` is the release
 * namespace, which Periscope protects: write and maintain get `edit` only through the tier
 * binder's RoleBindings, which exist in `workNs` and never in `ns`. (triage's exec and delete are
 * granted cluster-wide by RBAC; the namespace-protection policy refuses them in `ns`, proven with
 * real requests in e2e/security/protected-namespaces.int.spec.ts.)
 */
function tierExpectations(ns: string, adminBound: boolean, workNs: string): Expectation[] {
  const [read, triage, write, maintain, admin] = TIERS.map(operator) as [
    ReturnType<typeof operator>,
    ReturnType<typeof operator>,
    ReturnType<typeof operator>,
    ReturnType<typeof operator>,
    ReturnType<typeof operator>,
  ];
  const nobody = operator('root');
  const rbacWrites = [
    `create rbac.authorization.k8s.io:roles in ${ns}`,
    `create rbac.authorization.k8s.io:rolebindings in ${ns}`,
    'create rbac.authorization.k8s.io:clusterroles',
    'create rbac.authorization.k8s.io:clusterrolebindings',
    'escalate rbac.authorization.k8s.io:clusterroles',
    'bind rbac.authorization.k8s.io:clusterroles',
  ];
  return [
    ...allow(read, `list pods in ${ns}`, `get apps:deployments in ${ns}`, `get pods/log in ${ns}`),
    ...deny(
      read,
      `get secrets in ${ns}`,
      `create pods in ${ns}`,
      `create pods/exec in ${ns}`,
      `delete pods in ${ns}`,
      `create apps:deployments in ${ns}`,
      'list nodes',
      'impersonate users',
      `impersonate serviceaccounts name=default in ${ns}`,
      ...rbacWrites,
    ),
    ...allow(
      triage,
      `list pods in ${ns}`,
      `create pods/exec in ${ns}`,
      `create pods/portforward in ${ns}`,
      `delete pods in ${ns}`,
      `create pods/eviction in ${ns}`,
      `patch apps:deployments in ${ns}`,
      `update apps:deployments/scale in ${ns}`,
    ),
    ...deny(
      triage,
      `get secrets in ${ns}`,
      `create pods in ${ns}`,
      `create apps:deployments in ${ns}`,
      `delete apps:deployments in ${ns}`,
      'list nodes',
      `impersonate serviceaccounts name=default in ${ns}`,
      ...rbacWrites,
    ),
    ...allow(
      write,
      `list pods in ${ns}`,
      'list pods',
      `create apps:deployments in ${workNs}`,
      `get secrets in ${workNs}`,
      `create secrets in ${workNs}`,
      `create pods/exec in ${workNs}`,
      `create serviceaccounts/token name=default in ${workNs}`,
      `impersonate serviceaccounts name=default in ${workNs}`,
    ),
    ...deny(
      write,
      'list nodes',
      `delete namespaces name=${ns}`,
      'list rbac.authorization.k8s.io:clusterroles',
      ...rbacWrites,
      // no edit in the protected namespace, and none cluster-wide
      'list secrets',
      `get secrets in ${ns}`,
      `create secrets in ${ns}`,
      `create pods in ${ns}`,
      `create pods/exec in ${ns}`,
      `create serviceaccounts/token name=default in ${ns}`,
      `impersonate serviceaccounts name=default in ${ns}`,
    ),
    ...allow(
      maintain,
      'list nodes',
      'list namespaces',
      'list rbac.authorization.k8s.io:clusterroles',
      `list pods in ${ns}`,
      `get secrets in ${workNs}`,
      `create apps:deployments in ${workNs}`,
      `delete pods in ${workNs}`,
    ),
    ...deny(
      maintain,
      'delete nodes',
      'get nodes/proxy',
      'create namespaces',
      'impersonate users',
      ...rbacWrites,
      'list secrets',
      `get secrets in ${ns}`,
      `create pods/exec in ${ns}`,
      `create serviceaccounts/token name=default in ${ns}`,
      `impersonate serviceaccounts name=default in ${ns}`,
    ),
    ...(adminBound
      ? allow(
          admin,
          'create rbac.authorization.k8s.io:clusterrolebindings',
          'delete nodes',
          `get secrets in ${ns}`,
        )
      : deny(admin, 'create rbac.authorization.k8s.io:clusterrolebindings', `list pods in ${ns}`)),
    ...deny(nobody, `list pods in ${ns}`, `get secrets in ${ns}`),
  ];
}

/**
 * The objects of one session's identity, as the provisioner builds them (libs/cluster-ops), for
 * operator carol@example.com in the given tier.
 */
function sessionIdentity(shellNs: string, tier: string, sessionId = randomUUID()) {
  const input = { sessionId, namespace: shellNs, tier, subject: 'carol@example.com' };
  return {
    sessionId,
    name: shellObjectName(sessionId),
    serviceAccount: buildSessionServiceAccount(input),
    role: buildSessionClusterRole(input),
    binding: buildSessionClusterRoleBinding(input),
  };
}

/** What a session's ServiceAccount may impersonate (its operator, tier, session), and nothing else. */
function sessionIdentityExpectations(shellNs: string, s: ReturnType<typeof sessionIdentity>, tier: string) {
  const sa = serviceAccount(shellNs, s.name);
  const others = TIERS.filter((t) => t !== tier).map((t) => `impersonate groups name=periscope-tier:${t}`);
  return [
    ...allow(
      sa,
      `impersonate groups name=periscope-tier:${tier}`,
      'impersonate users name=carol@example.com',
      `impersonate authentication.k8s.io:userextras/audit.periscope.io/session-id name=${s.sessionId}`,
      'impersonate authentication.k8s.io:userextras/audit.periscope.io/actor name=carol@example.com',
    ),
    ...deny(
      sa,
      ...others,
      'impersonate users name=mallory@example.com',
      'impersonate users name=system:kube-controller-manager',
      'impersonate users name=system:admin',
      'impersonate users',
      'impersonate groups name=system:masters',
      `impersonate authentication.k8s.io:userextras/audit.periscope.io/session-id name=${randomUUID()}`,
      'impersonate authentication.k8s.io:userextras/audit.periscope.io/actor name=mallory@example.com',
      'impersonate authentication.k8s.io:userextras/scopes',
      `impersonate serviceaccounts name=default in ${shellNs}`,
      'impersonate authentication.k8s.io:uids',
      `get pods in ${shellNs}`,
      'list pods',
      `get secrets in ${shellNs}`,
      `create pods in ${shellNs}`,
      `create serviceaccounts/token name=${s.name} in ${shellNs}`,
      `get configmaps in ${shellNs}`,
      'list namespaces',
    ),
  ];
}

/**
 * The provisioner writes pods, secrets, ServiceAccounts and tokens in the shell namespace and
 * nowhere else, and creates (never updates) ClusterRoles and ClusterRoleBindings, which the
 * shell-identity admission policy narrows to session identities.
 */
function provisionerExpectations(
  provisioner: ReturnType<typeof serviceAccount>,
  shellNs: string,
  elsewhere: string[],
): Expectation[] {
  return [
    ...allow(
      provisioner,
      `create pods in ${shellNs}`,
      `get pods in ${shellNs}`,
      `watch pods in ${shellNs}`,
      `delete pods in ${shellNs}`,
      `list pods in ${shellNs}`,
      `create pods/exec in ${shellNs}`,
      `create secrets in ${shellNs}`,
      `get secrets in ${shellNs}`,
      `delete secrets in ${shellNs}`,
      // the kubeconfig is written into the session Secret after its bound token is minted
      `update secrets in ${shellNs}`,
      `list events in ${shellNs}`,
      `create serviceaccounts in ${shellNs}`,
      `delete serviceaccounts in ${shellNs}`,
      `list serviceaccounts in ${shellNs}`,
      `create serviceaccounts/token name=periscope-shell-${randomUUID()} in ${shellNs}`,
      'create rbac.authorization.k8s.io:clusterroles',
      'delete rbac.authorization.k8s.io:clusterroles',
      'list rbac.authorization.k8s.io:clusterroles',
      'create rbac.authorization.k8s.io:clusterrolebindings',
      'delete rbac.authorization.k8s.io:clusterrolebindings',
      'list rbac.authorization.k8s.io:clusterrolebindings',
    ),
    ...deny(
      provisioner,
      `update pods in ${shellNs}`,
      `update serviceaccounts in ${shellNs}`,
      'update rbac.authorization.k8s.io:clusterroles',
      'update rbac.authorization.k8s.io:clusterrolebindings',
      'escalate rbac.authorization.k8s.io:clusterroles',
      'bind rbac.authorization.k8s.io:clusterroles',
      `create apps:deployments in ${shellNs}`,
      `create rbac.authorization.k8s.io:roles in ${shellNs}`,
      `create rbac.authorization.k8s.io:rolebindings in ${shellNs}`,
      'list pods',
      'list secrets',
      'create pods',
      ...elsewhere.flatMap((ns) => [
        `create pods in ${ns}`,
        `create secrets in ${ns}`,
        `get secrets in ${ns}`,
        `create pods/exec in ${ns}`,
        `create serviceaccounts in ${ns}`,
        `create serviceaccounts/token name=periscope-shell-${randomUUID()} in ${ns}`,
        `create serviceaccounts/token name=default in ${ns}`,
      ]),
    ),
  ];
}

/**
 * An identity's rights: may impersonate operators (narrowly), may never change RBAC beyond
 * creating session identities (the provisioner's create rights are checked separately, with the
 * admission policy, by real requests).
 */
function impersonatorExpectations(
  who: ReturnType<typeof serviceAccount>,
  namespaces: string[],
  tierBinder = false,
): Expectation[] {
  // With clusterRBAC.enabled the app runs the tier binder: it may create and delete RoleBindings
  // and bind `edit`, narrowed by its admission policy to its own bindings (tierBinderRights).
  const binderRights = (access: string): boolean =>
    !tierBinder || !/^(create|delete) rbac\.authorization\.k8s\.io:rolebindings /.test(access);
  return [
    ...(tierBinder
      ? [
          ...allow(who, 'bind rbac.authorization.k8s.io:clusterroles name=edit', 'list namespaces'),
          ...deny(
            who,
            'bind rbac.authorization.k8s.io:clusterroles name=admin',
            'bind rbac.authorization.k8s.io:clusterroles name=cluster-admin',
            'escalate rbac.authorization.k8s.io:clusterroles name=edit',
            'update rbac.authorization.k8s.io:rolebindings',
          ),
        ]
      : []),
    ...allow(
      who,
      'impersonate users name=carol@example.com',
      ...TIERS.map((t) => `impersonate groups name=periscope-tier:${t}`),
      'impersonate authentication.k8s.io:userextras/audit.periscope.io/session-id',
      'impersonate authentication.k8s.io:userextras/audit.periscope.io/actor',
    ),
    ...deny(
      who,
      'impersonate groups name=system:masters',
      'impersonate groups name=system:nodes',
      'impersonate groups name=periscope-tier:root',
      'impersonate authentication.k8s.io:userextras/scopes',
      'impersonate serviceaccounts name=default in kube-system',
      'list pods',
      'list secrets',
      'get secrets in kube-system',
      'update rbac.authorization.k8s.io:clusterroles name=cluster-admin',
      'update rbac.authorization.k8s.io:clusterrolebindings name=cluster-admin',
      'escalate rbac.authorization.k8s.io:clusterroles',
      'bind rbac.authorization.k8s.io:clusterroles',
      ...namespaces
        .flatMap((ns) => [
          `create rbac.authorization.k8s.io:roles in ${ns}`,
          `create rbac.authorization.k8s.io:rolebindings in ${ns}`,
          `update rbac.authorization.k8s.io:rolebindings in ${ns}`,
          `delete rbac.authorization.k8s.io:rolebindings in ${ns}`,
          `bind rbac.authorization.k8s.io:roles in ${ns}`,
        ])
        .filter(binderRights),
    ),
  ];
}

/**
 * With the app's real token, as its tier binder: it creates exactly its own `edit` bindings in
 * an ordinary namespace (so `workNs` then has them), and its admission policy refuses them in a
 * protected namespace, and refuses any other binding it could make or delete.
 */
async function tierBinderRights(kc: string, protectedNs: string, workNs: string): Promise<void> {
  const [write, maintain] = TIER_EDIT_BINDINGS;
  await cluster.waitFor('the tier binder policy to take effect', async () =>
    /may not bind edit in a namespace Periscope protects/.test(
      (await create(kc, tierRoleBinding(protectedNs, write), true)).stderr,
    ),
  );
  for (const b of TIER_EDIT_BINDINGS) expect((await create(kc, tierRoleBinding(workNs, b))).stderr).toBe('');
  await cluster.kubectlOk([
    '-n',
    workNs,
    'create',
    'rolebinding',
    `admins-own-${id}`,
    '--clusterrole=view',
    '--user=bob',
  ]);
  // A kubectl command line, or an object to create.
  const refusals: [{ args: string[] } | { object: unknown }, RegExp][] = [
    [
      { object: tierRoleBinding(protectedNs, maintain) },
      /may not bind edit in a namespace Periscope protects/,
    ],
    [
      { object: tierRoleBinding('kube-system', maintain) },
      /may not bind edit in a namespace Periscope protects/,
    ],
    [
      {
        args: ['-n', workNs, 'create', 'rolebinding', `escape-${id}`, '--clusterrole=edit', '--user=mallory'],
      },
      /may only create RoleBindings labelled periscope\.io\/purpose=tier-rbac/,
    ],
    [
      {
        object: {
          ...tierRoleBinding(workNs, write),
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'periscope-tier:read' }],
          metadata: { ...tierRoleBinding(workNs, write).metadata, name: `escape2-${id}` },
        },
      },
      /may only create RoleBindings labelled/,
    ],
    [
      {
        args: [
          '-n',
          workNs,
          'create',
          'rolebinding',
          `escape3-${id}`,
          '--clusterrole=admin',
          '--group=periscope-tier:write',
        ],
      },
      /attempting to grant RBAC permissions not currently held/,
    ],
    [
      { args: ['-n', workNs, 'delete', 'rolebinding', `admins-own-${id}`] },
      /may only delete RoleBindings labelled/,
    ],
  ];
  for (const [what, message] of refusals) {
    const r =
      'args' in what
        ? await cluster.kubectl([...what.args, '--dry-run=server'], { kubeconfig: kc })
        : await create(kc, what.object, true);
    expect(r.code, JSON.stringify(what)).not.toBe(0);
    expect(r.stderr, JSON.stringify(what)).toMatch(message);
  }
}

const create = (kubeconfig: string, o: unknown, dryRun = false) =>
  cluster.kubectl(['create', ...(dryRun ? ['--dry-run=server'] : []), '-f', '-'], {
    kubeconfig,
    input: JSON.stringify(o),
  });

/**
 * With the provisioner's real token: creates one session's identity exactly as libs/cluster-ops
 * builds it (the admission policy lets it through), mints the session's token bound to its Secret,
 * and shows with SubjectAccessReviews and that token that it acts only as its operator, tier and
 * session and reads nothing itself; then deletes it all again.
 */
async function sessionIdentityRoundTrip(provisionerKc: string, shellNs: string, tier: string): Promise<void> {
  const s = sessionIdentity(shellNs, tier);
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: s.name, namespace: shellNs, labels: s.serviceAccount.metadata?.labels },
  };
  for (const o of [secret, s.serviceAccount, s.role, s.binding]) {
    const r = await create(provisionerKc, o);
    expect(r.stderr, `${(o as { kind: string }).kind} as the provisioner`).toBe('');
  }
  try {
    expect(await accessMismatches(cluster, sessionIdentityExpectations(shellNs, s, tier))).toEqual([]);
    const minted = await cluster.kubectl(
      [
        '-n',
        shellNs,
        'create',
        'token',
        s.name,
        '--bound-object-kind=Secret',
        `--bound-object-name=${s.name}`,
      ],
      { kubeconfig: provisionerKc },
    );
    expect(minted.stderr).toBe('');
    const token = minted.stdout.trim();
    const as = (name: string, user: Record<string, unknown>): string =>
      cluster.kubeconfig(`${s.name}-${name}`, { token, ...user });
    const operator = {
      as: 'carol@example.com',
      asGroups: [`periscope-tier:${tier}`],
      asUserExtra: {
        'audit.periscope.io/session-id': [s.sessionId],
        'audit.periscope.io/actor': ['carol@example.com'],
      },
    };
    const who = await cluster.kubectl(['auth', 'whoami', '-o', 'json'], {
      kubeconfig: as('operator', operator),
    });
    expect(who.stderr).toBe('');
    expect((JSON.parse(who.stdout) as { status: { userInfo: unknown } }).status.userInfo).toEqual({
      username: 'carol@example.com',
      groups: [`periscope-tier:${tier}`, 'system:authenticated'],
      extra: operator.asUserExtra,
    });
    const forged: [string, Record<string, unknown>, RegExp][] = [
      [
        'system-user',
        { ...operator, as: 'system:kube-controller-manager' },
        /cannot impersonate resource "users"/,
      ],
      ['other-person', { ...operator, as: 'mallory@example.com' }, /cannot impersonate resource "users"/],
      [
        'other-tier',
        { ...operator, asGroups: [`periscope-tier:${tier === 'read' ? 'admin' : 'read'}`] },
        /cannot impersonate resource "groups"/,
      ],
      [
        'other-session',
        {
          ...operator,
          asUserExtra: { ...operator.asUserExtra, 'audit.periscope.io/session-id': [randomUUID()] },
        },
        /cannot impersonate resource "userextras\/audit.periscope.io\/session-id"/,
      ],
      [
        'other-actor',
        {
          ...operator,
          asUserExtra: { ...operator.asUserExtra, 'audit.periscope.io/actor': ['mallory@example.com'] },
        },
        /cannot impersonate resource "userextras\/audit.periscope.io\/actor"/,
      ],
    ];
    for (const [name, user, refusal] of forged) {
      const r = await cluster.kubectl(['-n', shellNs, 'get', 'pods'], { kubeconfig: as(name, user) });
      expect(r.stderr, name).toMatch(refusal);
    }
    const itself = await cluster.kubectl(['-n', shellNs, 'get', 'pods'], { kubeconfig: as('bare', {}) });
    expect(itself.stderr).toMatch(/forbidden/);
  } finally {
    for (const [kind, namespace] of [
      ['clusterrolebinding', undefined],
      ['clusterrole', undefined],
      ['serviceaccount', shellNs],
      ['secret', shellNs],
    ] as const) {
      const r = await cluster.kubectl([...(namespace ? ['-n', namespace] : []), 'delete', kind, s.name], {
        kubeconfig: provisionerKc,
      });
      expect(r.stderr, `delete ${kind} as the provisioner`).toBe('');
    }
  }
}

/**
 * With the provisioner's real token: the objects RBAC alone would let it create (it holds every
 * rule in them, or they are not RBAC at all), each refused by the shell-identity admission policy;
 * and the objects RBAC's escalation check refuses because the provisioner does not hold their
 * rules. Every attempt is a server-side dry run, so a policy that fails to refuse changes nothing.
 */
async function refusedIdentities(provisionerKc: string, shellNs: string, policy: string): Promise<string[]> {
  const s = sessionIdentity(shellNs, 'admin');
  const other = sessionIdentity(shellNs, 'admin');
  const role = s.role as unknown as {
    metadata: { name: string; labels: Record<string, string> };
    rules: object[];
  };
  const binding = s.binding as unknown as {
    metadata: { name: string; labels: Record<string, string> };
    roleRef: Record<string, string>;
    subjects: Record<string, string>[];
  };
  const withRules = (rules: object[], extra: object = {}) => ({ ...role, ...extra, rules });
  const impersonate = (resource: string, names?: string[], group = '') => ({
    apiGroups: [group],
    resources: [resource],
    verbs: ['impersonate'],
    ...(names ? { resourceNames: names } : {}),
  });
  const byPolicy = new RegExp(
    `ValidatingAdmissionPolicy '${policy}' with binding '${policy}' denied request`,
  );
  const byEscalation = /is attempting to grant RBAC permissions not currently held/;
  const attempts: [string, unknown, RegExp][] = [
    ['a role of another name', { ...role, metadata: { ...role.metadata, name: `escape-${id}` } }, byPolicy],
    ['a role without the shell labels', { ...role, metadata: { name: role.metadata.name } }, byPolicy],
    ['a role for any user', withRules([impersonate('users')]), byPolicy],
    [
      'a role for a system user',
      withRules([impersonate('users', ['system:kube-controller-manager'])]),
      byPolicy,
    ],
    [
      'a role for two users',
      withRules([impersonate('users', ['carol@example.com', 'mallory@example.com'])]),
      byPolicy,
    ],
    [
      'a role with two user rules',
      withRules([impersonate('users', ['carol@example.com']), impersonate('users', ['mallory@example.com'])]),
      byPolicy,
    ],
    [
      "a role for another session's id",
      withRules([
        impersonate('userextras/audit.periscope.io/session-id', [other.sessionId], 'authentication.k8s.io'),
      ]),
      byPolicy,
    ],
    [
      'a role that aggregates others',
      withRules([], {
        aggregationRule: {
          clusterRoleSelectors: [{ matchLabels: { 'rbac.example.com/aggregate': 'true' } }],
        },
      }),
      /must have cluster-admin privileges to use the aggregationRule/,
    ],
    [
      'a binding to another ServiceAccount',
      { ...binding, subjects: [{ kind: 'ServiceAccount', name: 'default', namespace: shellNs }] },
      byPolicy,
    ],
    [
      'a binding to a person',
      {
        ...binding,
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'mallory@example.com' }],
      },
      byPolicy,
    ],
    [
      "a binding to another session's role",
      { ...binding, roleRef: { ...binding.roleRef, name: other.name } },
      byPolicy,
    ],
    [
      'a ServiceAccount of another name',
      {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: 'mallory', namespace: shellNs, labels: s.serviceAccount.metadata?.labels },
      },
      byPolicy,
    ],
    // RBAC's own escalation check: rules the provisioner does not hold.
    [
      'a role granting everything',
      withRules([{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }]),
      byEscalation,
    ],
    [
      'a role reading Secrets',
      withRules([{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }]),
      byEscalation,
    ],
    ['a role for system:masters', withRules([impersonate('groups', ['system:masters'])]), byEscalation],
    [
      'a binding to cluster-admin',
      { ...binding, roleRef: { ...binding.roleRef, name: 'cluster-admin' } },
      byEscalation,
    ],
  ];
  // The bindings' escalation check reads the roles they name, so those exist (valid, created for real).
  for (const r of [s.role, other.role]) expect((await create(provisionerKc, r)).stderr).toBe('');
  const wrong: string[] = [];
  for (const [what, o, refusal] of attempts) {
    const r = await create(provisionerKc, o, true);
    if (r.code === 0 || !refusal.test(r.stderr))
      wrong.push(`${what}: ${r.code === 0 ? 'created' : r.stderr.trim()}`);
  }
  // Deletes of anything but a shell object, and tokens for anything but a session's ServiceAccount.
  for (const args of [
    ['delete', 'clusterrole', 'view'],
    ['delete', 'clusterrolebinding', 'cluster-admin'],
    ['-n', shellNs, 'delete', 'serviceaccount', 'default'],
    ['-n', shellNs, 'create', 'token', 'default'],
  ]) {
    // `create token` has no dry run; a refused token request mints nothing either way.
    const dry = args[args.length - 2] === 'token' ? [] : ['--dry-run=server'];
    const r = await cluster.kubectl([...args, ...dry], { kubeconfig: provisionerKc });
    if (r.code === 0 || !byPolicy.test(r.stderr))
      wrong.push(`${args.join(' ')}: ${r.code === 0 ? 'allowed' : r.stderr.trim()}`);
  }
  for (const r of [s.name, other.name])
    await cluster.kubectlOk(['delete', 'clusterrole', r], { kubeconfig: provisionerKc });
  return wrong;
}

describe('periscope chart against the local apiserver', () => {
  const release = `psc-${id}`;
  const ns = `psc-srv-${id}`;
  const shellNs = `psc-shell-${id}`;
  const workNs = `psc-work-${id}`;
  const fullname = `${release}-periscope`;
  const server = serviceAccount(ns, fullname);

  beforeAll(async () => {
    await cluster.createNamespace(ns);
    await cluster.createNamespace(workNs);
    const manifests = render(
      'periscope',
      {
        publicURL: 'https://periscope.example.com',
        clusters: [
          { name: 'home', backend: 'in-cluster' },
          { name: 'edge-1', backend: 'agent' },
        ],
        auth: {
          oidc: { issuer: 'https://login.example.com', clientID: 'periscope' },
          authorization: { mode: 'tier', groupTiers: { admins: 'admin' } },
        },
        oidcClientSecret: { value: 'not-a-real-secret' },
        agentTunnel: { url: 'https://periscope-tunnel.example.com:8443', caSecret: 'periscope-agent-ca' },
        clusterShell: { enabled: true, tiers: TIERS, namespace: shellNs, networkPolicy: SHELL_EGRESS },
        clusterRBAC: { enabled: true, adminTier: { enabled: true } },
        ingress: { enabled: true, host: 'periscope.example.com', tls: { enabled: true, secretName: 'tls' } },
        networkPolicy: { enabled: true },
      },
      { release, namespace: ns },
    );
    await applyRendered(manifests);
  });

  afterAll(async () => {
    await deleteClusterScoped(release);
  });

  it('created what it rendered, including the shell namespace with Pod Security labels', async () => {
    const labels = JSON.parse(
      await cluster.kubectlOk(['get', 'namespace', shellNs, '-o', 'jsonpath={.metadata.labels}']),
    ) as Record<string, string>;
    expect(labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    expect(
      await cluster.kubectlOk(['-n', ns, 'get', 'deployment,service,configmap,pvc', '-o', 'name']),
    ).toContain(`deployment.apps/${fullname}`);
  });

  it('lets the server provision only in the shell namespace', async () => {
    expect(
      await accessMismatches(
        cluster,
        provisionerExpectations(server, shellNs, [ns, 'default', 'kube-system']).filter(
          // In its own namespace it creates the agent CA Secret (RBAC cannot narrow a create by name).
          // As tier binder it may create RoleBindings anywhere by RBAC; its admission policy
          // refuses them in the shell namespace (tierBinderRights).
          (e) =>
            e.access !== `create secrets in ${ns}` &&
            e.access !== `create rbac.authorization.k8s.io:rolebindings in ${shellNs}`,
        ),
      ),
    ).toEqual([]);
  });

  it('lets the server keep the agent CA and the agent certificate records in their Secrets and read no other Secret of its namespace', async () => {
    expect(
      await accessMismatches(cluster, [
        ...allow(
          server,
          `get secrets name=periscope-agent-ca in ${ns}`,
          `create secrets in ${ns}`,
          `get secrets name=periscope-agent-ca-agents in ${ns}`,
          `update secrets name=periscope-agent-ca-agents in ${ns}`,
        ),
        ...deny(
          server,
          `get secrets name=${fullname}-oidc in ${ns}`,
          `list secrets in ${ns}`,
          `update secrets name=periscope-agent-ca in ${ns}`,
          `delete secrets name=periscope-agent-ca in ${ns}`,
          `delete secrets name=periscope-agent-ca-agents in ${ns}`,
          `update secrets name=${fullname}-oidc in ${ns}`,
        ),
      ]),
    ).toEqual([]);
  });

  it('with a real token: the server, as tier binder, binds edit for write and maintain outside its namespaces and nothing else', async () => {
    const kc = cluster.kubeconfig(`${release}-server`, { token: await tokenFor(ns, fullname) });
    await tierBinderRights(kc, ns, workNs);
  });

  it('grants each tier what it should and nothing more', async () => {
    expect(await accessMismatches(cluster, tierExpectations(ns, true, workNs))).toEqual([]);
  });

  it('lets the server impersonate operators (in-cluster backend) but not touch RBAC beyond its tier bindings', async () => {
    expect(await accessMismatches(cluster, impersonatorExpectations(server, [ns, shellNs], true))).toEqual(
      [],
    );
  });

  it('with real tokens: the provisioner creates a session identity that acts only as its operator, tier and session', async () => {
    const kc = cluster.kubeconfig(`${release}-server`, { token: await tokenFor(ns, fullname) });
    await waitForShellPolicy(cluster, shellNs, kc);
    await sessionIdentityRoundTrip(kc, shellNs, 'admin');
  });

  it('with a real token: the admission policy refuses every other identity the provisioner could create', async () => {
    const kc = cluster.kubeconfig(`${release}-server`, { token: await tokenFor(ns, fullname) });
    await waitForShellPolicy(cluster, shellNs, kc);
    expect(await refusedIdentities(kc, shellNs, `${fullname}-shell-identities`)).toEqual([]);
  });

  it('with real tokens: session pods only in the shell namespace, as their own ServiceAccount, Pod Security "restricted"', async () => {
    const kc = cluster.kubeconfig(`${release}-server`, { token: await tokenFor(ns, fullname) });
    const s = sessionIdentity(shellNs, 'read');
    expect((await create(kc, s.serviceAccount)).stderr).toBe('');
    try {
      const elsewhere = await cluster.kubectl(['-n', 'default', 'create', 'secret', 'generic', 'x'], {
        kubeconfig: kc,
      });
      expect(elsewhere.stderr).toMatch(/forbidden/);
      const ok = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], {
        kubeconfig: kc,
        input: restrictedPod(shellNs, s.name, s.name),
      });
      expect(ok.stderr).toBe('');
      const loose = JSON.parse(restrictedPod(shellNs, 'loose', s.name)) as { spec: Record<string, unknown> };
      delete loose.spec['securityContext'];
      const refused = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], {
        kubeconfig: kc,
        input: JSON.stringify(loose),
      });
      expect(refused.stderr).toMatch(/violates PodSecurity "restricted/);
      const podElsewhere = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], {
        kubeconfig: kc,
        input: restrictedPod(ns, 'elsewhere'),
      });
      expect(podElsewhere.stderr).toMatch(/forbidden/);
    } finally {
      await cluster.kubectlOk(['-n', shellNs, 'delete', 'serviceaccount', s.name], { kubeconfig: kc });
    }
  });
});

describe('periscope-agent chart against the local apiserver', () => {
  const release = `pag-${id}`;
  const ns = `psc-agent-${id}`;
  const shellNs = `psc-ashell-${id}`;
  const workNs = `psc-awork-${id}`;
  const fullname = `${release}-periscope-agent`;
  const agent = serviceAccount(ns, fullname);

  beforeAll(async () => {
    await cluster.createNamespace(ns);
    await cluster.createNamespace(workNs);
    const manifests = render(
      'periscope-agent',
      {
        agent: { ...AGENT_REQUIRED, registrationToken: { value: 'one-time' } },
        clusterShell: { enabled: true, tiers: TIERS, namespace: shellNs, networkPolicy: SHELL_EGRESS },
        // The admin tier stays unbound here, to show the binding is opt-in.
        clusterRBAC: { enabled: true },
      },
      { release, namespace: ns },
    );
    await applyRendered(manifests);
  });

  afterAll(async () => {
    await deleteClusterScoped(release);
  });

  it('lets the agent provision only in the shell namespace', async () => {
    expect(
      await accessMismatches(
        cluster,
        provisionerExpectations(agent, shellNs, [ns, 'default', 'kube-system']).filter(
          // In its own namespace it creates its state Secret (RBAC cannot narrow a create by name).
          // As tier binder it may create RoleBindings anywhere by RBAC; its admission policy
          // refuses them in the shell namespace (tierBinderRights).
          (e) =>
            e.access !== `create secrets in ${ns}` &&
            e.access !== `create rbac.authorization.k8s.io:rolebindings in ${shellNs}`,
        ),
      ),
    ).toEqual([]);
  });

  it('lets the agent impersonate operators narrowly and never change RBAC outside session identities', async () => {
    expect(
      await accessMismatches(
        cluster,
        impersonatorExpectations(agent, [ns, shellNs, 'default', 'kube-system'], true),
      ),
    ).toEqual([]);
  });

  it('gives the agent its state Secret, the cluster CA, and no other Secret or ConfigMap', async () => {
    expect(
      await accessMismatches(cluster, [
        ...allow(
          agent,
          `get secrets name=periscope-agent-state in ${ns}`,
          `update secrets name=periscope-agent-state in ${ns}`,
          `create secrets in ${ns}`,
          'get configmaps name=cluster-info in kube-public',
        ),
        ...deny(
          agent,
          `get secrets name=${fullname}-registration in ${ns}`,
          `list secrets in ${ns}`,
          `delete secrets name=periscope-agent-state in ${ns}`,
          'get configmaps name=other in kube-public',
          'list configmaps in kube-public',
        ),
      ]),
    ).toEqual([]);
  });

  it('with real tokens: the agent creates a session identity that acts only as its operator, tier and session', async () => {
    const kc = cluster.kubeconfig(`${release}-agent`, { token: await tokenFor(ns, fullname) });
    await waitForShellPolicy(cluster, shellNs, kc);
    await sessionIdentityRoundTrip(kc, shellNs, 'triage');
  });

  it('with a real token: the admission policy refuses every other identity the agent could create', async () => {
    const kc = cluster.kubeconfig(`${release}-agent`, { token: await tokenFor(ns, fullname) });
    await waitForShellPolicy(cluster, shellNs, kc);
    expect(await refusedIdentities(kc, shellNs, `${fullname}-shell-identities`)).toEqual([]);
  });

  it('with a real token: the agent, as tier binder, binds edit for write and maintain outside its namespaces and nothing else', async () => {
    const kc = cluster.kubeconfig(`${release}-agent`, { token: await tokenFor(ns, fullname) });
    await tierBinderRights(kc, shellNs, workNs);
  });

  it('grants each tier what it should, and the admin tier nothing unless enabled', async () => {
    expect(await accessMismatches(cluster, tierExpectations(ns, false, workNs))).toEqual([]);
  });

  it('with a real token: the agent cannot create RBAC objects, directly or by impersonating system:masters', async () => {
    const kc = cluster.kubeconfig(`${release}-agent`, { token: await tokenFor(ns, fullname) });
    const attempts = [
      ['create', 'clusterrolebinding', `escape-${id}`, '--clusterrole=cluster-admin', '--user=mallory'],
      ['create', 'clusterrole', `escape-${id}`, '--verb=*', '--resource=*'],
      ['-n', ns, 'create', 'rolebinding', `escape-${id}`, '--clusterrole=admin', '--user=mallory'],
      ['-n', shellNs, 'create', 'role', `escape-${id}`, '--verb=get', '--resource=secrets'],
      [
        'create',
        'clusterrolebinding',
        `escape2-${id}`,
        '--clusterrole=cluster-admin',
        '--user=mallory',
        '--as=x',
        '--as-group=system:masters',
      ],
    ];
    for (const args of attempts) {
      const r = await cluster.kubectl(args, { kubeconfig: kc });
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(/forbidden/);
    }
    const info = await cluster.kubectl(
      ['-n', 'kube-public', 'get', 'configmap', 'cluster-info', '-o', 'name'],
      {
        kubeconfig: kc,
      },
    );
    expect(info.stdout.trim()).toBe('configmap/cluster-info');
  });
});

describe('periscope-agent mode=rbac-only against the local apiserver (a kubeconfig user as provisioner)', () => {
  const release = `pro-${id}`;
  const shellNs = `psc-roshell-${id}`;
  const workNs = `psc-rowork-${id}`;
  const fullname = `${release}-periscope-agent`;
  // A token-file user, as a server's kubeconfig user (or an EKS-mapped user) would be.
  const user = {
    label: 'user alice@example.com',
    user: 'alice@example.com',
    groups: ['devs', 'system:authenticated'],
  };

  beforeAll(async () => {
    await cluster.createNamespace(workNs);
    const manifests = render(
      'periscope-agent',
      {
        mode: 'rbac-only',
        provisioner: { subject: { kind: 'User', name: user.user } },
        clusterShell: { enabled: true, tiers: TIERS, namespace: shellNs, networkPolicy: SHELL_EGRESS },
      },
      { release, namespace: 'default' },
    );
    const objects = await applyRendered(manifests);
    expect(objects.map((o) => o.kind)).not.toContain('Deployment');
  });

  afterAll(async () => {
    await deleteClusterScoped(release);
  });

  it('lets that user provision only in the shell namespace and impersonate operators narrowly', async () => {
    expect(
      await accessMismatches(cluster, [
        ...provisionerExpectations(user, shellNs, [workNs, 'default', 'kube-system']),
        ...impersonatorExpectations(user, [shellNs, workNs, 'default']),
      ]),
    ).toEqual([]);
  });

  it("is what the server's readiness check asks for: nothing missing for that user, everything for another", async () => {
    const kcOf = (u: 'alice' | 'bob'): k8s.KubeConfig => {
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(cluster.kubeconfigForUser(u));
      return kc;
    };
    const ready = await checkShellAccess(kcOf('alice'), { namespace: shellNs, tiers: TIERS });
    expect(ready).toMatchObject({ username: 'alice@example.com', namespaceMissing: false, missing: [] });
    const none = await checkShellAccess(kcOf('bob'), { namespace: shellNs, tiers: TIERS });
    expect(none.missing.length).toBe(shellAccessRequirements(shellNs, TIERS).length);
    // All rights (an admin kubeconfig) but no namespace: said so, from a server-side dry run.
    const admin = new k8s.KubeConfig();
    admin.loadFromFile(cluster.info.adminKubeconfig);
    const noNs = await checkShellAccess(admin, { namespace: `psc-nons-${id}`, tiers: TIERS });
    expect(noNs).toMatchObject({ namespaceMissing: true, missing: [] });
    expect((await checkShellAccess(admin, { namespace: shellNs, tiers: TIERS })).namespaceMissing).toBe(
      false,
    );
  });

  it('with a real token: the admission policy refuses every other identity that user could create, and allows a session', async () => {
    const kc = cluster.kubeconfigForUser('alice');
    await waitForShellPolicy(cluster, shellNs, kc);
    expect(await refusedIdentities(kc, shellNs, `${fullname}-shell-identities`)).toEqual([]);
    await sessionIdentityRoundTrip(kc, shellNs, 'admin');
  });

  it('protects the shell namespace but not the release namespace', async () => {
    const policy = await cluster.kubectlOk([
      'get',
      'validatingadmissionpolicy',
      `${fullname}-protected-namespaces`,
      '-o',
      'jsonpath={.spec.matchConstraints.namespaceSelector.matchExpressions[0].values}',
    ]);
    expect(JSON.parse(policy)).toEqual(expect.arrayContaining([shellNs]));
    expect(JSON.parse(policy)).not.toContain('default');
  });
});

describe('helm install and uninstall against the local apiserver', () => {
  const release = `phi-${id}`;
  const ns = `psc-helm-${id}`;
  const shellNs = `psc-hshell-${id}`;

  it('installs the agent chart (namespace first, NOTES rendered) and removes every object on uninstall', async () => {
    const helm = join(cluster.info.binDir, 'helm');
    const run = (args: string[]): { status: number | null; stdout: string; stderr: string } =>
      spawnSync(helm, ['--kubeconfig', cluster.info.adminKubeconfig, ...args], {
        encoding: 'utf8',
        timeout: 120_000,
      });
    const install = run([
      'install',
      release,
      join(__dirname, '../../charts/periscope-agent'),
      '--namespace',
      ns,
      '--create-namespace',
      '--set',
      `agent.serverURL=${AGENT_REQUIRED.serverURL},agent.clusterName=edge-9`,
      '--set',
      `clusterShell.enabled=true,clusterShell.namespace=${shellNs},clusterRBAC.enabled=true`,
      // The local plane has no default/kubernetes endpoints for the shell egress policy to look up.
      '--set',
      'clusterShell.networkPolicy.apiserver.cidrs={127.0.0.1/32}',
    ]);
    expect(install.status, install.stderr).toBe(0);
    expect(install.stdout).toContain('Periscope agent 0.1.0 for cluster edge-9');
    expect(install.stdout).toContain(`sessions in namespace ${shellNs}`);
    expect(
      await cluster.kubectlOk([
        'get',
        'validatingadmissionpolicy',
        `${release}-periscope-agent-shell-identities`,
        '-o',
        'name',
      ]),
    ).toBe(
      `validatingadmissionpolicy.admissionregistration.k8s.io/${release}-periscope-agent-shell-identities\n`,
    );
    // No --wait: without a controller-manager the removed shell Namespace stays Terminating.
    const uninstall = run(['uninstall', release, '--namespace', ns]);
    expect(uninstall.status, uninstall.stderr).toBe(0);
    const left = await cluster.kubectlOk([
      'get',
      'clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding',
      '-l',
      `app.kubernetes.io/instance=${release}`,
      '-o',
      'name',
    ]);
    expect(left).toBe('');
  });
});
