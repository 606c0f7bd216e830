import 'reflect-metadata';

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as k8s from '@kubernetes/client-node';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { TierBinder, TIER_EDIT_BINDINGS } from '@periscope/cluster-ops';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createAgentApp, type AgentApp } from '../../apps/agent/src/agent-app';
import { loadAgentConfig } from '../../apps/agent/src/config/agent-config';
import { ClusterRegistry } from '../../apps/server/src/clusters/cluster-registry.service';
import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import { AGENT_REQUIRED } from '../charts/cases';
import { parseManifests, render, type K8sObject } from '../charts/helm';
import { startTestCluster, type ExecResult, type TestCluster } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { devLogin } from '../support/dev-login';
import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';

/**
 * Periscope's namespaces are admin-only (issue 16 §1, design §10). Both charts are rendered as the
 * guide instructs (cluster shell for every tier, tier RBAC with the admin tier) and applied to a
 * local control plane of this file's own, with a shell-like pod in the shell namespace, the
 * "agent" and "server" pods in their release namespaces, and the two tier binders running with
 * the agent's and the server's real ServiceAccount tokens. Then, for every tier below admin, real
 * requests made as the operator (impersonated from the admin kubeconfig, as Periscope does, or
 * with the operator's own client certificate where a second impersonation is the point) are
 * refused in those namespaces and still work in an ordinary one; admin keeps everything. Through
 * the server API, a pod exec into a protected namespace answers E_PROTECTED_NAMESPACE before the
 * apiserver is asked, and pod lists hide those pods.
 */

const SERVER_NS = 'periscope';
const AGENT_NS = 'periscope-agent';
const SHELL_NS = 'periscope-shells';
const APP_NS = 'workloads';
const SERVER_SA = 'periscope';
const AGENT_SA = 'periscope-agent';
const TIERS = ['read', 'triage', 'write', 'maintain', 'admin'] as const;
const BELOW_ADMIN = ['read', 'triage', 'write', 'maintain'] as const;
type Tier = (typeof TIERS)[number];

/** The protected pods: a live shell session, the agent, the server. */
const PROTECTED_PODS = [
  { ns: SHELL_NS, pod: 'periscope-shell-0b7c', sa: 'periscope-shell-0b7c', secret: 'periscope-shell-0b7c' },
  { ns: AGENT_NS, pod: 'agent', sa: AGENT_SA, secret: 'periscope-agent-state' },
  { ns: SERVER_NS, pod: 'server', sa: SERVER_SA, secret: 'periscope-agent-ca' },
] as const;

let cluster: TestCluster;
let work: string;
const binders: TierBinder[] = [];

const asTier = (tier: Tier): string[] => [
  '--as',
  `${tier}-op@example.com`,
  '--as-group',
  `periscope-tier:${tier}`,
];

/** kubectl as an operator of a tier, impersonated from the admin kubeconfig as Periscope does. */
function kubectlAs(
  tier: Tier,
  args: string[],
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<ExecResult> {
  // Flags first: everything after `--` belongs to the command run in the pod.
  return cluster.kubectl([...asTier(tier), ...args], { timeoutMs: opts.timeoutMs ?? 30_000, ...opts });
}

/** Runs `fns` at most `n` at a time (two cores, one apiserver). */
async function pool<T>(n: number, fns: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = new Array<T>(fns.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < fns.length) {
        const i = next++;
        out[i] = await fns[i]!();
      }
    }),
  );
  return out;
}

function pod(ns: string, name: string, sa: string, extra: Record<string, unknown> = {}): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns },
    spec: {
      serviceAccountName: sa,
      terminationGracePeriodSeconds: 1,
      securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'main',
          image: 'busybox',
          command: ['sleep', '3600'],
          ports: [{ containerPort: 8080 }],
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          },
        },
      ],
      ...extra,
    },
  };
}

const operatorKubeconfigs = new Map<Tier, string>();

/** A client certificate for an operator of a tier (CN = user, O = group), signed by the cluster CA. */
function operatorKubeconfig(tier: Tier): string {
  const known = operatorKubeconfigs.get(tier);
  if (known !== undefined) return known;
  const name = `${tier}-op`;
  const key = join(work, `${name}.key`);
  const csr = join(work, `${name}.csr`);
  const crt = join(work, `${name}.crt`);
  const ext = join(work, `${name}.ext`);
  writeFileSync(ext, 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  const ssl = (args: string[]): void => {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  ssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  ssl(['req', '-new', '-key', key, '-subj', `/O=periscope-tier:${tier}/CN=${name}@example.com`, '-out', csr]);
  ssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    cluster.pki.caCert,
    '-CAkey',
    cluster.pki.caKey,
    '-CAcreateserial',
    '-CAserial',
    join(work, 'ca.srl'),
    '-days',
    '1',
    '-out',
    crt,
    '-extfile',
    ext,
  ]);
  const kc = cluster.kubeconfig(name, { clientCertFile: crt, clientKeyFile: key });
  operatorKubeconfigs.set(tier, kc);
  return kc;
}

async function applyObjects(objects: K8sObject[]): Promise<void> {
  const namespaces = objects.filter((o) => o.kind === 'Namespace');
  const rest = objects.filter((o) => o.kind !== 'Namespace');
  for (const part of [namespaces, rest]) {
    if (part.length === 0) continue;
    await cluster.kubectlOk(['apply', '--validate=strict', '-f', '-'], {
      input: part.map((o) => JSON.stringify(o)).join('\n'),
    });
  }
}

/** A binder as the agent or server runs it, with that app's real ServiceAccount token. */
async function startBinder(ns: string, sa: string, protectedNamespaces: string[]): Promise<TierBinder> {
  const token = (await cluster.kubectlOk(['-n', ns, 'create', 'token', sa, '--duration=1h'])).trim();
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cluster.kubeconfig(`${sa}-binder`, { token }));
  const logs: string[] = [];
  const binder = new TierBinder(kc, {
    protectedNamespaces,
    watchSeconds: 20,
    log: {
      info: (o, m) => logs.push(`${m} ${JSON.stringify(o)}`),
      warn: (o, m) => logs.push(`WARN ${m} ${JSON.stringify(o)}`),
    },
  });
  binders.push(binder);
  const first = binder.nextSync(60_000);
  binder.start();
  await first.catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; binder log:\n${logs.join('\n')}`);
  });
  return binder;
}

/** Tier RoleBindings by namespace, as `<ns>/<name>`. */
async function tierRoleBindings(): Promise<string[]> {
  const out = await cluster.kubectlOk([
    'get',
    'rolebindings',
    '-A',
    '-l',
    'periscope.io/purpose=tier-rbac',
    '-o',
    'jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{"\\n"}{end}',
  ]);
  return out.split('\n').filter((l) => l !== '');
}

/**
 * Refused by RBAC or by a namespace-protection policy (not by anything else, such as Pod
 * Security, which would prove nothing here).
 */
const denied = (r: ExecResult): boolean =>
  r.code !== 0 &&
  /(cannot [a-z:-]+ resource "|ValidatingAdmissionPolicy '[^']*-protected-namespaces')/.test(r.stderr);

describe("Periscope's namespaces are admin-only (charts + tier binder + server)", () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'periscope-protected-'));
    cluster = await startTestCluster();
    for (const ns of [SERVER_NS, AGENT_NS, APP_NS]) await cluster.createNamespace(ns);
    const auth = {
      oidc: { issuer: 'https://login.example.com', clientID: 'periscope' },
      authorization: { mode: 'tier', groupTiers: { admins: 'admin' } },
    };
    const shell = {
      enabled: true,
      tiers: [...TIERS],
      namespace: SHELL_NS,
      // helm template cannot look the apiserver up; the shells' egress policy needs its address.
      networkPolicy: { apiserver: { cidrs: ['127.0.0.1/32'] } },
    };
    const rbac = { enabled: true, adminTier: { enabled: true } };
    const server = parseManifests(
      render(
        'periscope',
        {
          publicURL: 'https://periscope.example.com',
          clusters: [{ name: 'home', backend: 'in-cluster' }],
          auth,
          oidcClientSecret: { value: 'not-a-real-secret' },
          clusterShell: shell,
          clusterRBAC: rbac,
          persistence: { enabled: false },
        },
        { release: 'periscope', namespace: SERVER_NS },
      ),
    );
    const agent = parseManifests(
      render(
        'periscope-agent',
        {
          agent: { ...AGENT_REQUIRED, registrationToken: { value: 'one-time' } },
          clusterShell: shell,
          clusterRBAC: rbac,
        },
        { release: 'periscope-agent', namespace: AGENT_NS },
      ),
    );
    // The Deployments would need a controller and real images; the pods below stand in for them.
    for (const objects of [server, agent]) {
      const kept = objects.filter((o) => o.kind !== 'Deployment');
      await applyObjects(kept);
    }
    await cluster.waitFor('the shell namespace', async () => {
      const r = await cluster.kubectl(['-n', SHELL_NS, 'get', 'serviceaccount', 'default', '-o', 'name']);
      return r.code === 0;
    });
    // A session's own ServiceAccount, as the provisioner makes it for an admin's shell.
    await cluster.kubectlOk(['-n', SHELL_NS, 'create', 'serviceaccount', PROTECTED_PODS[0].sa]);
    // Secrets an operator must never read: a session kubeconfig, the agent's key, the agent CA.
    for (const p of PROTECTED_PODS)
      await cluster.kubectlOk([
        '-n',
        p.ns,
        'create',
        'secret',
        'generic',
        p.secret,
        '--from-literal=key=very-secret',
      ]);
    await cluster.kubectlOk(['-n', APP_NS, 'create', 'secret', 'generic', 'app-db', '--from-literal=pw=x']);
    await applyObjects([
      pod(SHELL_NS, PROTECTED_PODS[0].pod, PROTECTED_PODS[0].sa, {
        automountServiceAccountToken: false,
        volumes: [{ name: 'session', secret: { secretName: PROTECTED_PODS[0].secret } }],
      }),
      pod(AGENT_NS, 'agent', AGENT_SA),
      pod(SERVER_NS, 'server', SERVER_SA),
      pod(APP_NS, 'app', 'default'),
    ]);
    for (const [ns, name] of [...PROTECTED_PODS.map((p) => [p.ns, p.pod] as const), [APP_NS, 'app'] as const])
      await cluster.kubectlOk(['-n', ns, 'wait', '--for=condition=Ready', `pod/${name}`, '--timeout=60s']);
    // A tier binding left in the agent's namespace (an old install, or an admin's slip): the
    // binder must remove it.
    await cluster.kubectlOk(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: {
          name: 'periscope-tier-write',
          namespace: AGENT_NS,
          labels: { 'periscope.io/purpose': 'tier-rbac' },
        },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'periscope-tier:write' }],
      }),
    });
    // Admission policies take effect a moment after they are created.
    await until(
      'the namespace-protection policy to take effect',
      async () =>
        /belongs to Periscope/.test(
          (await kubectlAs('triage', ['-n', AGENT_NS, 'delete', 'pod', 'agent', '--dry-run=server'])).stderr,
        ),
      30_000,
    );
    // The two binders as the charts configure them: the agent protects its namespace and the
    // shell namespace, the server its own and the shell namespace.
    await startBinder(AGENT_NS, AGENT_SA, [AGENT_NS, SHELL_NS]);
    await startBinder(SERVER_NS, SERVER_SA, [SERVER_NS, SHELL_NS]);
  }, 240_000);

  afterAll(async () => {
    await Promise.all(binders.map((b) => b.stop()));
    // undefined when the plane did not start
    await (cluster as TestCluster | undefined)?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('binds no tier to edit cluster-wide; reads stay cluster-wide', async () => {
    const crbs = JSON.parse(await cluster.kubectlOk(['get', 'clusterrolebindings', '-o', 'json'])) as {
      items: { metadata: { name: string }; roleRef: { name: string }; subjects?: { name: string }[] }[];
    };
    const tierBindings = crbs.items.filter((b) =>
      (b.subjects ?? []).some((s) => s.name.startsWith('periscope-tier:')),
    );
    expect(tierBindings.filter((b) => b.roleRef.name === 'edit').map((b) => b.metadata.name)).toEqual([]);
    expect(
      tierBindings
        .filter((b) => b.roleRef.name === 'view')
        .flatMap((b) => (b.subjects ?? []).map((s) => s.name))
        .sort(),
    ).toEqual([
      'periscope-tier:maintain',
      'periscope-tier:read',
      'periscope-tier:triage',
      'periscope-tier:write',
    ]);
    // view has no Secrets and no impersonation (checked, not assumed).
    const view = await cluster.kubectlOk(['get', 'clusterrole', 'view', '-o', 'json']);
    expect(view).not.toMatch(/"secrets"/);
    expect(view).not.toMatch(/"impersonate"/);
    // edit on this Kubernetes does mint tokens and impersonate ServiceAccounts: why it is per namespace.
    const edit = await cluster.kubectlOk(['get', 'clusterrole', 'edit', '-o', 'json']);
    expect(edit).toMatch(/"serviceaccounts\/token"/);
    expect(edit).toMatch(/"impersonate"/);
  });

  it("the tier binders bind edit in every ordinary namespace and in none of Periscope's", async () => {
    const found = await tierRoleBindings();
    for (const ns of [APP_NS, 'default', 'kube-public'])
      for (const b of TIER_EDIT_BINDINGS) expect(found, `${ns}/${b.name}`).toContain(`${ns}/${b.name}`);
    for (const ns of [SERVER_NS, AGENT_NS, SHELL_NS, 'kube-system'])
      expect(
        found.filter((f) => f.startsWith(`${ns}/`)),
        ns,
      ).toEqual([]);
    // Each binder learnt the other app's namespace (and the charts' default, kube-system) from the
    // admission policies, so they do not fight.
    for (const b of binders)
      expect(b.status().protectedNamespaces).toEqual([AGENT_NS, SERVER_NS, SHELL_NS, 'kube-system'].sort());
    expect(binders.every((b) => b.status().errors === 0)).toBe(true);
  });

  describe.each(BELOW_ADMIN)('tier %s', (tier) => {
    it('cannot exec, attach, port-forward or add an ephemeral container to a shell, agent or server pod', async () => {
      const attempts = PROTECTED_PODS.flatMap((p) => [
        { what: `exec ${p.ns}/${p.pod}`, args: ['-n', p.ns, 'exec', p.pod, '--', 'cat', '/etc/hostname'] },
        { what: `attach ${p.ns}/${p.pod}`, args: ['-n', p.ns, 'attach', p.pod] },
        {
          what: `port-forward ${p.ns}/${p.pod}`,
          args: ['-n', p.ns, 'port-forward', `pod/${p.pod}`, '0:8080'],
        },
        {
          what: `ephemeral container in ${p.ns}/${p.pod}`,
          args: ['-n', p.ns, 'debug', p.pod, '--image=busybox', '--profile=restricted', '--', 'true'],
        },
      ]);
      const results = await pool(
        4,
        attempts.map((a) => () => kubectlAs(tier, a.args, { timeoutMs: 15_000 })),
      );
      const allowed = attempts.flatMap((a, i) =>
        denied(results[i]!) ? [] : [`${a.what}: ${results[i]!.stdout}${results[i]!.stderr}`],
      );
      expect(allowed).toEqual([]);
      if (tier === 'triage') {
        // triage holds pods/exec cluster-wide: the admission policy is what refuses it here.
        expect(results[0]!.stderr).toMatch(
          /belongs to Periscope .* only the admin tier .*CONNECT pods\/exec refused.*ask a Periscope admin/,
        );
        expect(results[2]!.stderr).toMatch(/protected-namespaces.*CONNECT pods\/portforward refused/);
      }
    });

    it('cannot read Secrets, mint tokens, create or delete pods there', async () => {
      const attempts = PROTECTED_PODS.flatMap((p) => [
        { what: `get secret ${p.ns}/${p.secret}`, args: ['-n', p.ns, 'get', 'secret', p.secret] },
        { what: `list secrets in ${p.ns}`, args: ['-n', p.ns, 'get', 'secrets'] },
        { what: `token for ${p.ns}/${p.sa}`, args: ['-n', p.ns, 'create', 'token', p.sa] },
        {
          what: `create pod in ${p.ns}`,
          args: ['create', '-f', '-'],
          input: JSON.stringify(pod(p.ns, `intruder-${tier}`, p.sa)),
        },
        {
          what: `delete pod ${p.ns}/${p.pod}`,
          args: ['-n', p.ns, 'delete', 'pod', p.pod, '--dry-run=server'],
        },
        {
          what: `create secret in ${p.ns}`,
          args: ['-n', p.ns, 'create', 'secret', 'generic', `planted-${tier}`, '--from-literal=a=b'],
        },
      ]);
      const results = await pool(
        4,
        attempts.map(
          (a: { args: string[]; input?: string }) => () =>
            kubectlAs(tier, a.args, a.input !== undefined ? { input: a.input } : {}),
        ),
      );
      const allowed = attempts.flatMap((a, i) =>
        denied(results[i]!) ? [] : [`${a.what}: ${results[i]!.stdout}${results[i]!.stderr}`],
      );
      expect(allowed).toEqual([]);
    });

    it('cannot impersonate a ServiceAccount there (with its own credential)', async () => {
      const kc = operatorKubeconfig(tier);
      for (const p of PROTECTED_PODS) {
        const r = await cluster.kubectl(
          ['-n', APP_NS, 'get', 'configmaps', '--as', `system:serviceaccount:${p.ns}:${p.sa}`],
          { kubeconfig: kc },
        );
        expect(denied(r), `${tier} impersonating ${p.ns}/${p.sa}: ${r.stderr}`).toBe(true);
        // "impersonate serviceaccounts", or with constrained impersonation (1.35+) "impersonate-on:…"
        expect(r.stderr).toMatch(/cannot impersonate(-on:serviceaccount:list)? resource/);
      }
      // Its own identity works (the certificate is real): whoami shows the tier group.
      const me = await cluster.kubectlOk(['auth', 'whoami'], { kubeconfig: kc });
      expect(me).toContain(`periscope-tier:${tier}`);
    });
  });

  it('the same operations still work in an ordinary namespace for the tiers that have them', async () => {
    const ok = async (tier: Tier, args: string[]): Promise<void> => {
      const r = await kubectlAs(tier, args);
      expect(r.stderr, `${tier}: kubectl ${args.join(' ')}`).not.toMatch(/forbidden/i);
      expect(r.code, `${tier}: kubectl ${args.join(' ')}: ${r.stderr}`).toBe(0);
    };
    // read: lists everywhere (also Periscope's pods: view has no Secrets), writes nothing.
    await ok('read', ['-n', AGENT_NS, 'get', 'pods']);
    await ok('read', ['get', 'pods', '-A']);
    expect(denied(await kubectlAs('read', ['-n', APP_NS, 'get', 'secret', 'app-db']))).toBe(true);
    // triage: exec and delete pods of workloads.
    await ok('triage', ['-n', APP_NS, 'exec', 'app', '--', 'true']);
    await ok('triage', ['-n', APP_NS, 'delete', 'pod', 'app', '--dry-run=server']);
    expect(denied(await kubectlAs('triage', ['-n', APP_NS, 'get', 'secret', 'app-db']))).toBe(true);
    for (const tier of ['write', 'maintain'] as const) {
      await ok(tier, ['-n', APP_NS, 'get', 'secret', 'app-db']);
      await ok(tier, ['-n', APP_NS, 'create', 'token', 'default']);
      await ok(tier, ['-n', APP_NS, 'exec', 'app', '--', 'true']);
      await ok(tier, [
        '-n',
        APP_NS,
        'run',
        `job-${tier}`,
        '--image=busybox',
        '--restart=Never',
        '--dry-run=server',
        '--',
        'true',
      ]);
      await ok(tier, ['get', 'pods', '-A']);
      // Impersonation is granted; the ServiceAccount itself may then do nothing.
      const r = await cluster.kubectl(
        ['-n', APP_NS, 'get', 'configmaps', '--as', `system:serviceaccount:${APP_NS}:default`],
        { kubeconfig: operatorKubeconfig(tier) },
      );
      expect(r.stderr).toMatch(new RegExp(`User "system:serviceaccount:${APP_NS}:default" cannot list`));
    }
  });

  it('admin keeps everything in the protected namespaces', async () => {
    for (const p of PROTECTED_PODS) {
      const exec = await kubectlAs('admin', ['-n', p.ns, 'exec', p.pod, '--', 'true']);
      expect(exec.code, exec.stderr).toBe(0);
      const secret = await kubectlAs('admin', ['-n', p.ns, 'get', 'secret', p.secret, '-o', 'name']);
      expect(secret.stdout.trim()).toBe(`secret/${p.secret}`);
      const token = await kubectlAs('admin', ['-n', p.ns, 'create', 'token', p.sa]);
      expect(token.stdout.trim().split('.')).toHaveLength(3);
      const pf = await kubectlAs('admin', ['-n', p.ns, 'port-forward', `pod/${p.pod}`, '0:8080'], {
        timeoutMs: 4000,
      });
      expect(pf.stdout, pf.stderr).toMatch(/Forwarding from/);
      const debug = await kubectlAs('admin', [
        '-n',
        p.ns,
        'debug',
        p.pod,
        '--image=busybox',
        '--profile=restricted',
        '--',
        'true',
      ]);
      expect(debug.code, debug.stderr).toBe(0);
    }
  });

  it('a namespace created after the binders started gets its bindings', async () => {
    const later = `later-${Date.now().toString(36)}`;
    await cluster.createNamespace(later);
    await until(
      `tier bindings in ${later}`,
      async () => {
        const found = await tierRoleBindings();
        return TIER_EDIT_BINDINGS.every((b) => found.includes(`${later}/${b.name}`));
      },
      20_000,
    );
    await cluster.kubectlOk(['-n', later, 'create', 'secret', 'generic', 'fresh', '--from-literal=a=b']);
    const r = await kubectlAs('write', ['-n', later, 'get', 'secret', 'fresh', '-o', 'name']);
    expect(r.stdout.trim(), r.stderr).toBe('secret/fresh');
  });

  it('a tier binding put into a protected namespace is removed at the next sync', async () => {
    await cluster.kubectlOk(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: {
          name: 'periscope-tier-maintain-edit',
          namespace: SHELL_NS,
          labels: { 'periscope.io/purpose': 'tier-rbac' },
        },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'periscope-tier:maintain' }],
      }),
    });
    await Promise.all(binders.map((b) => b.nextSync(60_000)));
    expect((await tierRoleBindings()).filter((f) => f.startsWith(`${SHELL_NS}/`))).toEqual([]);
  });

  describe('through the server API', () => {
    let server: NestExpressApplication;
    let agent: AgentApp | undefined;
    let base: string;
    const ORIGIN = 'http://localhost:8080';
    const cookies: Record<string, string> = {};

    beforeAll(async () => {
      writeFileSync(
        join(work, 'auth.yaml'),
        [
          'authorization:',
          '  mode: tier',
          '  groupTiers: { admins: admin, oncall: triage, devs: write }',
          'dev:',
          '  users:',
          '    - { subject: alice@example.com, groups: [admins] }',
          '    - { subject: tina@example.com, groups: [oncall] }',
          '    - { subject: wes@example.com, groups: [devs] }',
        ].join('\n'),
      );
      // The server's own namespace comes from PERISCOPE_PROTECTED_NAMESPACES only on an
      // in-cluster backend; here the clusters file names the agent's and the server's namespaces.
      writeFileSync(
        join(work, 'clusters.yaml'),
        [
          'clusters:',
          `  - name: lab`,
          `    backend: kubeconfig`,
          `    kubeconfigPath: ${cluster.info.adminKubeconfig}`,
          `    protectedNamespaces: [${AGENT_NS}, ${SERVER_NS}]`,
          // Reached through a real agent: what it protects arrives in its hello.
          `  - name: edge`,
          `    backend: agent`,
        ].join('\n'),
      );
      const tunnelPort = await freePort();
      server = await createServerApp(
        loadServerConfig(
          {
            PERISCOPE_AUTH_MODE: 'dev',
            PERISCOPE_AUTH_FILE: join(work, 'auth.yaml'),
            PERISCOPE_CLUSTERS_FILE: join(work, 'clusters.yaml'),
            PERISCOPE_DATA_DIR: join(work, 'data'),
            // The shell namespace is protected on every cluster while the shell is on.
            PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
            PERISCOPE_CLUSTER_SHELL_NAMESPACE: SHELL_NS,
            PERISCOPE_CLUSTER_SHELL_TIERS: TIERS.join(','),
            PERISCOPE_REAPER_INTERVAL_SECONDS: '3600',
            PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
            PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${tunnelPort}`,
            PERISCOPE_PUBLIC_URL: ORIGIN,
            PERISCOPE_LOG_LEVEL: 'warn',
          },
          (p) => readFileSync(p, 'utf8'),
        ),
      );
      await server.listen(0, '127.0.0.1');
      base = await server.getUrl();
      for (const u of ['alice', 'tina', 'wes']) cookies[u] = await devLogin(base, `${u}@example.com`);
      // The agent as its chart configures it (its namespace, the shell, kube-system; the tier
      // binder on), with the admin kubeconfig standing in for its in-cluster identity.
      process.env['KUBECONFIG'] = cluster.info.adminKubeconfig;
      const minted = await fetch(`${base}/api/agents/tokens`, {
        method: 'POST',
        headers: headers('alice'),
        body: JSON.stringify({ cluster: 'edge' }),
      });
      expect(minted.status, await minted.clone().text()).toBe(201);
      const { token } = (await minted.json()) as { token: string };
      agent = await createAgentApp(
        loadAgentConfig({
          PERISCOPE_SERVER_URL: `https://127.0.0.1:${tunnelPort}`,
          PERISCOPE_REGISTRATION_URL: base,
          PERISCOPE_CLUSTER_NAME: 'edge',
          PERISCOPE_REGISTRATION_TOKEN: token,
          PERISCOPE_AGENT_NAMESPACE: AGENT_NS,
          PERISCOPE_AGENT_SECRET_NAME: 'periscope-agent-state-e2e',
          PERISCOPE_AGENT_LISTEN_ADDRESS: '127.0.0.1',
          PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
          PERISCOPE_CLUSTER_SHELL_TIERS: TIERS.join(','),
          PERISCOPE_CLUSTER_SHELL_NAMESPACE: SHELL_NS,
          PERISCOPE_PROTECTED_NAMESPACES: `${AGENT_NS},kube-system`,
          PERISCOPE_TIER_BINDINGS: 'true',
          PERISCOPE_LOG_LEVEL: 'warn',
        }),
      );
      await agent.listen(0, '127.0.0.1');
      const registry = server.get(ClusterRegistry);
      await until(
        'the agent to connect',
        () => registry.list().find((c) => c.name === 'edge')?.connection.state === 'connected',
        60_000,
      );
    }, 180_000);

    afterAll(async () => {
      await agent?.close();
      await (server as NestExpressApplication | undefined)?.close();
    });

    const headers = (user: string): Record<string, string> => ({
      cookie: cookies[user] ?? '',
      origin: ORIGIN,
      'content-type': 'application/json',
    });
    const execTicket = (user: string, ns: string, podName: string, c = 'lab'): Promise<Response> =>
      fetch(`${base}/api/clusters/${c}/pods/${ns}/${podName}/exec/sessions`, {
        method: 'POST',
        headers: headers(user),
        body: JSON.stringify({ container: 'main', command: ['true'], tty: false }),
      });

    it('refuses a non-admin pod exec into a protected namespace with E_PROTECTED_NAMESPACE, before the apiserver is asked', async () => {
      for (const user of ['tina', 'wes'])
        for (const p of PROTECTED_PODS) {
          const res = await execTicket(user, p.ns, p.pod);
          expect(res.status, `${user} → ${p.ns}`).toBe(403);
          const body = (await res.json()) as { error: string; message: string };
          expect(body.error).toBe('E_PROTECTED_NAMESPACE');
          expect(body.message).toMatch(
            new RegExp(
              `namespace ${p.ns} on cluster lab belongs to Periscope.*only the admin tier.*ask a Periscope admin`,
            ),
          );
        }
      // A plain upgrade without a ticket is refused the same way.
      const ws = new TerminalClient(
        `${base.replace('http', 'ws')}/api/clusters/lab/pods/${AGENT_NS}/agent/exec?container=main`,
        headers('tina'),
      );
      await expect(ws.opened).rejects.toThrow(/HTTP 403/);
      // The apiserver never saw an exec of theirs there.
      const seen = cluster
        .auditEvents()
        .filter(
          (e) =>
            e.objectRef?.subresource === 'exec' &&
            ['tina@example.com', 'wes@example.com'].includes(e.impersonatedUser?.username ?? ''),
        );
      expect(seen).toEqual([]);
    });

    it('still lets triage exec into a pod of an ordinary namespace, and admin into the agent pod', async () => {
      for (const [user, ns, podName] of [
        ['tina', APP_NS, 'app'],
        ['alice', AGENT_NS, 'agent'],
        ['alice', SHELL_NS, PROTECTED_PODS[0].pod],
      ] as const) {
        const res = await execTicket(user, ns, podName);
        expect(res.status, `${user} → ${ns}: ${await res.clone().text()}`).toBe(201);
        const { socketPath } = (await res.json()) as { socketPath: string };
        const client = new TerminalClient(`${base.replace('http', 'ws')}${socketPath}`, headers(user));
        await client.opened;
        await client.closed;
        expect(client.frames, `${user} → ${ns}`).toContainEqual({
          type: 'closed',
          reason: 'exit',
          exitCode: 0,
        });
      }
    });

    it('hides the pods of protected namespaces from non-admin pod lists; admin sees them', async () => {
      const list = async (user: string, query = ''): Promise<Response> =>
        fetch(`${base}/api/clusters/lab/pods${query}`, { headers: headers(user) });
      const names = async (user: string): Promise<string[]> => {
        const res = await list(user);
        expect(res.status).toBe(200);
        return ((await res.json()) as { pods: { namespace: string; name: string }[] }).pods.map(
          (p) => `${p.namespace}/${p.name}`,
        );
      };
      const protectedPods = PROTECTED_PODS.map((p) => `${p.ns}/${p.pod}`);
      for (const user of ['tina', 'wes']) {
        const seen = await names(user);
        expect(seen).toContain(`${APP_NS}/app`);
        expect(seen.filter((s) => protectedPods.includes(s))).toEqual([]);
        const one = await list(user, `?namespace=${AGENT_NS}`);
        expect(one.status).toBe(403);
        expect(((await one.json()) as { error: string }).error).toBe('E_PROTECTED_NAMESPACE');
      }
      const all = await names('alice');
      for (const p of protectedPods) expect(all).toContain(p);
    });

    it('on an agent cluster, refuses what the agent reported in its hello, and its tier binder runs', async () => {
      const registry = server.get(ClusterRegistry);
      expect(registry.protectedNamespaces('edge')).toEqual([AGENT_NS, 'kube-system', SHELL_NS].sort());
      for (const p of PROTECTED_PODS.filter((x) => x.ns !== SERVER_NS)) {
        const res = await execTicket('tina', p.ns, p.pod, 'edge');
        expect(res.status, `tina → edge ${p.ns}`).toBe(403);
        expect(((await res.json()) as { error: string }).error).toBe('E_PROTECTED_NAMESPACE');
      }
      const listed = (await (
        await fetch(`${base}/api/clusters/edge/pods`, { headers: headers('tina') })
      ).json()) as { pods: { namespace: string }[] };
      expect(listed.pods.map((p) => p.namespace)).toContain(APP_NS);
      expect(listed.pods.filter((p) => [AGENT_NS, SHELL_NS].includes(p.namespace))).toEqual([]);
      const ok = await execTicket('alice', AGENT_NS, 'agent', 'edge');
      expect(ok.status, await ok.clone().text()).toBe(201);
      // The agent's own tier binder (PERISCOPE_TIER_BINDINGS) synced with the namespaces it reports.
      const binder = agent?.tierBinder?.binder;
      expect(binder).toBeDefined();
      await until(
        'the agent tier binder’s first sync',
        () => binder?.status().lastSyncAt !== undefined,
        30_000,
      );
      expect(binder?.status()).toMatchObject({ running: true, errors: 0 });
      expect(binder?.status().protectedNamespaces).toEqual(
        expect.arrayContaining([AGENT_NS, SHELL_NS, SERVER_NS, 'kube-system']),
      );
    });
  });
});
