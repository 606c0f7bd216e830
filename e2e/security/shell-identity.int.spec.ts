import { randomUUID } from 'node:crypto';

import {
  discoverClusterCa,
  shellObjectName,
  ShellProvisioner,
  type ProvisionInput,
} from '@periscope/cluster-ops';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { SHELL_NS, startShellCluster } from '../cluster-ops/shell-cluster';
import type { TestCluster } from '../k8s/cluster';

/*
 * The hostile operator's view of a shell's credential. A real session pod of every tier runs the
 * real periscope-shell and kubectl; from inside it, with nothing but the pod's own
 * /etc/periscope/kubeconfig, the operator tries to act as someone else: a system user, another
 * person, another tier, another session, another actor. The apiserver must refuse each one at
 * the impersonation check, while the session's true identity keeps working.
 */
const TIERS = ['read', 'triage', 'write', 'maintain', 'admin'] as const;
type Tier = (typeof TIERS)[number];
const ns = SHELL_NS;
const subjectOf = (tier: string): string => `${tier}-operator@example.com`;

interface Probe {
  code: number;
  out: string;
}

interface WhoAmI {
  status: { userInfo: { username: string; groups?: string[]; extra?: Record<string, string[]> } };
}

let env: Awaited<ReturnType<typeof startShellCluster>> | undefined;
let cluster: TestCluster;
let base: Omit<ProvisionInput, 'sessionId' | 'tier' | 'subject'>;
const logs: { fields: Record<string, unknown>; message: string }[] = [];
let provisioner: ShellProvisioner;
const sessions = new Map<Tier, string>();

beforeAll(async () => {
  env = await startShellCluster(inject('cluster').binDir, { tiers: [...TIERS] });
  cluster = env.cluster;
  provisioner = new ShellProvisioner(env.provisionerKc, {
    log: (fields, message) => logs.push({ fields, message }),
  });
  const { caPem, server } = await discoverClusterCa(env.provisionerKc, { preferClusterInfo: true });
  base = {
    namespace: ns,
    image: env.image,
    imagePullPolicy: 'IfNotPresent',
    mode: 'bash',
    server,
    caPem,
    tokenSeconds: 3600,
    podStartTimeoutMs: 60_000,
  };
  // One live session per tier, side by side, as on a busy cluster.
  await Promise.all(
    TIERS.map(async (tier) => {
      const sessionId = randomUUID();
      await provisioner.provision({ ...base, sessionId, tier, subject: subjectOf(tier) });
      sessions.set(tier, sessionId);
    }),
  );
}, 240_000);

afterAll(async () => {
  await env?.stop();
});

/**
 * Runs a bash script in the session pod (as the pod's own user, with the pod's KUBECONFIG) whose
 * `probe NAME CMD…` lines each print one result line: name, exit code, output on one line.
 */
async function probesIn(sessionId: string, script: string): Promise<Map<string, Probe>> {
  const prelude = [
    'probe() { local name=$1; shift; local out; out=$("$@" 2>&1); local code=$?;',
    '  printf "%s\\t%s\\t%s\\n" "$name" "$code" "$(printf "%s" "$out" | tr "\\n\\t" "  ")"; }',
    // A copy of the pod's own kubeconfig with one edit (jq), as an operator would make it.
    'forge() { kubectl config view --raw -o json | jq "$1" > /tmp/forged.json; }',
    'forged() { KUBECONFIG=/tmp/forged.json "$@"; }',
  ].join('\n');
  const out = await cluster.kubectlOk(
    [
      '-n',
      ns,
      'exec',
      shellObjectName(sessionId),
      '-c',
      'shell',
      '--',
      'bash',
      '-c',
      `${prelude}\n${script}`,
    ],
    { timeoutMs: 120_000 },
  );
  const results = new Map<string, Probe>();
  for (const line of out.split('\n')) {
    const [name, code, text] = line.split('\t');
    if (name && code !== undefined) results.set(name, { code: Number(code), out: text ?? '' });
  }
  return results;
}

const kubeconfigOf = async (sessionId: string): Promise<string> =>
  Buffer.from(
    await cluster.kubectlOk([
      '-n',
      ns,
      'get',
      'secret',
      shellObjectName(sessionId),
      '-o',
      'jsonpath={.data.kubeconfig}',
    ]),
    'base64',
  ).toString();

const tokenOf = async (sessionId: string): Promise<string> => {
  const m = /token: (\S+)/.exec(await kubeconfigOf(sessionId));
  if (!m?.[1]) throw new Error('no token in the session kubeconfig');
  return m[1];
};

/** `kubectl auth whoami` with a bare token (no impersonation), from outside the pod. */
const whoamiWithToken = (token: string) =>
  cluster.kubectl([
    '--token',
    token,
    '--kubeconfig',
    '/dev/null',
    '--server',
    cluster.info.url,
    '--certificate-authority',
    cluster.info.caFile,
    'auth',
    'whoami',
    '-o',
    'jsonpath={.status.userInfo.username}',
  ]);

const exists = async (kind: string, name: string, namespace?: string): Promise<boolean> => {
  const r = await cluster.kubectl([
    ...(namespace !== undefined ? ['-n', namespace] : []),
    'get',
    kind,
    name,
    '-o',
    'name',
  ]);
  if (r.code !== 0 && !/NotFound|not found/.test(r.stderr)) throw new Error(r.stderr);
  return r.code === 0;
};

describe("a shell's own credential acts only as its operator, tier and session", () => {
  it.each(TIERS)('%s tier: every other identity is refused at the impersonation check', async (tier) => {
    const sessionId = sessions.get(tier)!;
    const subject = subjectOf(tier);
    const otherTier: Tier = tier === 'admin' ? 'read' : 'admin';
    const otherSession = sessions.get(otherTier)!;
    const otherPerson = subjectOf(otherTier);
    const extras = '.users[0].user["as-user-extra"]';
    const r = await probesIn(
      sessionId,
      [
        'probe whoami kubectl auth whoami -o json',
        `probe works kubectl get pods -n ${ns} -o name`,
        // The issue's own example: a bootstrap system user, with the pod's own tier group.
        `probe system-user kubectl --as=system:kube-controller-manager --as-group=periscope-tier:${tier} get secrets -A`,
        'probe system-admin kubectl --as=system:admin --as-group=system:masters get secrets -A',
        `probe masters-group kubectl --as-group=periscope-tier:${tier} --as-group=system:masters get secrets -A`,
        `probe service-account kubectl --as=system:serviceaccount:${ns}:provisioner get pods -n ${ns}`,
        `probe other-person kubectl --as=${otherPerson} get pods -n ${ns}`,
        `probe other-tier kubectl --as-group=periscope-tier:${otherTier} get pods -n ${ns}`,
        // Another person with that person's actor extra: forged attribution in the audit log.
        `forge '.users[0].user.as="${otherPerson}" | ${extras}["audit.periscope.io/actor"]=["${otherPerson}"]'`,
        `probe other-person-and-actor forged kubectl get pods -n ${ns}`,
        `forge '${extras}["audit.periscope.io/session-id"]=["${otherSession}"]'`,
        `probe other-session forged kubectl get pods -n ${ns}`,
        `forge '${extras}["audit.periscope.io/actor"]=["${otherPerson}"]'`,
        `probe other-actor forged kubectl get pods -n ${ns}`,
        `forge '${extras}["audit.periscope.io/session-id"]+=["${randomUUID()}"]'`,
        `probe second-session-id forged kubectl get pods -n ${ns}`,
        // Without any impersonation: the token's own identity, which may read nothing.
        `forge 'del(.users[0].user.as, .users[0].user["as-groups"], ${extras})'`,
        'probe bare-whoami forged kubectl auth whoami -o jsonpath={.status.userInfo.username}',
        `probe bare-pods forged kubectl get pods -n ${ns}`,
      ].join('\n'),
    );

    const who = r.get('whoami');
    expect(who?.code, who?.out).toBe(0);
    const info = (JSON.parse(who!.out) as WhoAmI).status.userInfo;
    expect(info.username).toBe(subject);
    expect(info.groups).toEqual([`periscope-tier:${tier}`, 'system:authenticated']);
    expect(info.extra).toEqual({
      'audit.periscope.io/session-id': [sessionId],
      'audit.periscope.io/actor': [subject],
    });
    expect(r.get('works')?.out).toContain(`pod/${shellObjectName(sessionId)}`);

    const refusals: Record<string, RegExp> = {
      'system-user':
        /users "system:kube-controller-manager" is forbidden: .*cannot impersonate resource "users"/,
      'system-admin': /users "system:admin" is forbidden: .*cannot impersonate resource "users"/,
      'masters-group': /groups "system:masters" is forbidden: .*cannot impersonate resource "groups"/,
      'service-account': /cannot impersonate resource "serviceaccounts"/,
      'other-person': new RegExp(
        `users "${otherPerson}" is forbidden: .*cannot impersonate resource "users"`,
      ),
      'other-tier': new RegExp(
        `groups "periscope-tier:${otherTier}" is forbidden: .*cannot impersonate resource "groups"`,
      ),
      'other-person-and-actor': /cannot impersonate resource "users"/,
      'other-session': new RegExp(
        `userextras.authentication.k8s.io "${otherSession}" is forbidden: .*cannot impersonate resource "userextras/audit.periscope.io/session-id"`,
      ),
      'other-actor': new RegExp(
        `userextras.authentication.k8s.io "${otherPerson}" is forbidden: .*cannot impersonate resource "userextras/audit.periscope.io/actor"`,
      ),
      'second-session-id': /cannot impersonate resource "userextras\/audit.periscope.io\/session-id"/,
    };
    const wrong = Object.entries(refusals).flatMap(([name, pattern]) => {
      const p = r.get(name);
      return p && p.code !== 0 && pattern.test(p.out)
        ? []
        : [`${name}: ${p ? `exit ${p.code}: ${p.out.slice(0, 300)}` : 'did not run'}`];
    });
    expect(wrong).toEqual([]);

    // Even a call that drops the impersonation headers is the session's own identity, which
    // reads nothing; the apiserver audit log names the session either way.
    expect(r.get('bare-whoami')?.out).toBe(`system:serviceaccount:${ns}:${shellObjectName(sessionId)}`);
    expect(r.get('bare-pods')?.out).toMatch(/forbidden/);
  });
});

describe('the per-session identity lives exactly as long as the session', () => {
  const tier = 'write';
  const subject = subjectOf(tier);

  it('is made of a ServiceAccount, a ClusterRole naming only this session, and its binding', async () => {
    const sessionId = sessions.get(tier)!;
    const name = shellObjectName(sessionId);
    const sa = JSON.parse(
      await cluster.kubectlOk(['-n', ns, 'get', 'serviceaccount', name, '-o', 'json']),
    ) as {
      automountServiceAccountToken?: boolean;
      metadata: { labels?: Record<string, string> };
    };
    expect(sa.automountServiceAccountToken).toBe(false);
    const role = JSON.parse(await cluster.kubectlOk(['get', 'clusterrole', name, '-o', 'json'])) as {
      metadata: { labels?: Record<string, string> };
      rules: unknown[];
    };
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['users'], verbs: ['impersonate'], resourceNames: [subject] },
      {
        apiGroups: [''],
        resources: ['groups'],
        verbs: ['impersonate'],
        resourceNames: [`periscope-tier:${tier}`],
      },
      {
        apiGroups: ['authentication.k8s.io'],
        resources: ['userextras/audit.periscope.io/session-id'],
        verbs: ['impersonate'],
        resourceNames: [sessionId],
      },
      {
        apiGroups: ['authentication.k8s.io'],
        resources: ['userextras/audit.periscope.io/actor'],
        verbs: ['impersonate'],
        resourceNames: [subject],
      },
    ]);
    const binding = JSON.parse(
      await cluster.kubectlOk(['get', 'clusterrolebinding', name, '-o', 'json']),
    ) as {
      metadata: { labels?: Record<string, string> };
      roleRef: unknown;
      subjects: unknown[];
    };
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name, namespace: ns }]);
    for (const labels of [sa.metadata.labels, role.metadata.labels, binding.metadata.labels])
      expect(labels).toMatchObject({
        'app.kubernetes.io/name': 'periscope-shell',
        'periscope.io/cluster-shell': 'true',
        'periscope.io/session-id': sessionId,
        'periscope.io/tier': tier,
      });
    const pod = JSON.parse(await cluster.kubectlOk(['-n', ns, 'get', 'pod', name, '-o', 'json'])) as {
      spec: { serviceAccountName: string };
    };
    expect(pod.spec.serviceAccountName).toBe(name);
  });

  it('after teardown the ServiceAccount, ClusterRole and binding are gone and the token is refused', async () => {
    const sessionId = randomUUID();
    const name = shellObjectName(sessionId);
    await provisioner.provision({ ...base, sessionId, tier, subject });
    const token = await tokenOf(sessionId);
    expect((await whoamiWithToken(token)).stdout).toBe(`system:serviceaccount:${ns}:${name}`);
    expect(await exists('clusterrole', name)).toBe(true);

    await provisioner.teardown(ns, sessionId);
    await provisioner.teardown(ns, sessionId); // harmless twice
    for (const [kind, namespace] of [
      ['pod', ns],
      ['secret', ns],
      ['serviceaccount', ns],
      ['clusterrole', undefined],
      ['clusterrolebinding', undefined],
    ] as const)
      await cluster.waitFor(`${kind} ${name} to be gone`, async () => !(await exists(kind, name, namespace)));
    await cluster.waitFor(
      'the session token to be refused',
      async () => (await whoamiWithToken(token)).code !== 0,
    );
  });

  it('the reaper removes an orphaned identity, skips a mislabelled object, and never touches a live one', async () => {
    // A crashed teardown: Pod and Secret are gone, the identity is left behind.
    const orphan = randomUUID();
    await provisioner.provision({ ...base, sessionId: orphan, tier, subject });
    await cluster.kubectlOk([
      '-n',
      ns,
      'delete',
      'pod,secret',
      shellObjectName(orphan),
      '--grace-period=1',
      '--wait=false',
    ]);
    // Someone labelled an object of their own as a shell object, with a session id that is no UUID.
    const bogus = `bogus-${randomUUID().slice(0, 8)}`;
    await cluster.apply(
      JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: {
          name: bogus,
          labels: {
            'periscope.io/cluster-shell': 'true',
            'periscope.io/session-id': 'not-a-uuid',
            'periscope.io/shell-namespace': ns,
          },
        },
        rules: [],
      }) +
        '\n' +
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: {
            name: bogus,
            namespace: ns,
            labels: { 'periscope.io/cluster-shell': 'true', 'periscope.io/session-id': 'not-a-uuid' },
          },
        }),
    );
    const live = new Set(sessions.values());
    const removed = await provisioner.reap(ns, (sid) => live.has(sid), 0);
    expect(removed).toEqual([orphan]);
    for (const [kind, namespace] of [
      ['serviceaccount', ns],
      ['clusterrole', undefined],
      ['clusterrolebinding', undefined],
    ] as const) {
      expect(await exists(kind, shellObjectName(orphan), namespace), kind).toBe(false);
      for (const sid of live) expect(await exists(kind, shellObjectName(sid), namespace), kind).toBe(true);
    }
    expect(await exists('clusterrole', bogus)).toBe(true);
    expect(await exists('secret', bogus, ns)).toBe(true);
    expect(logs.some((l) => l.fields['sessionId'] === 'not-a-uuid' && /skipped/.test(l.message))).toBe(true);
    // And the live sessions still work.
    const who = await probesIn(sessions.get('read')!, 'probe whoami kubectl auth whoami -o json');
    expect(who.get('whoami')?.code, who.get('whoami')?.out).toBe(0);
  });
});
