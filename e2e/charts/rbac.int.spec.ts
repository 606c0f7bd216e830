import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { TestClusterClient } from '../k8s/cluster';
import { accessMismatches, allow, deny, operator, serviceAccount, type Expectation } from './access';
import { AGENT_REQUIRED } from './cases';
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
    'clusterrole,clusterrolebinding',
    '-l',
    `app.kubernetes.io/instance=${release}`,
    '--ignore-not-found',
  ]);
}

async function tokenFor(namespace: string, sa: string): Promise<string> {
  return (await cluster.kubectlOk(['-n', namespace, 'create', 'token', sa, '--duration=1h'])).trim();
}

/** A pod that meets Pod Security "restricted", as the server builds session pods. */
function restrictedPod(namespace: string, name: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: {
      serviceAccountName: 'periscope-shell-admin',
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'shell',
          image: 'ghcr.io/gnana997/periscope-shell:0.1.0',
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

/** What every tier's binding must grant and withhold (admin only when bound). */
function tierExpectations(ns: string, adminBound: boolean): Expectation[] {
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
      `create apps:deployments in ${ns}`,
      `get secrets in ${ns}`,
      `create secrets in ${ns}`,
      `create pods/exec in ${ns}`,
    ),
    ...deny(
      write,
      'list nodes',
      `delete namespaces name=${ns}`,
      'list rbac.authorization.k8s.io:clusterroles',
      ...rbacWrites,
    ),
    ...allow(
      maintain,
      'list nodes',
      'list namespaces',
      'list rbac.authorization.k8s.io:clusterroles',
      `get secrets in ${ns}`,
      `create apps:deployments in ${ns}`,
      `delete pods in ${ns}`,
    ),
    ...deny(
      maintain,
      'delete nodes',
      'get nodes/proxy',
      'create namespaces',
      'impersonate users',
      ...rbacWrites,
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

/** What the shell ServiceAccount of each tier may impersonate, and that it reads nothing itself. */
function shellAccountExpectations(shellNs: string): Expectation[] {
  return TIERS.flatMap((tier) => {
    const sa = serviceAccount(shellNs, `periscope-shell-${tier}`);
    const others = TIERS.filter((t) => t !== tier).map((t) => `impersonate groups name=periscope-tier:${t}`);
    return [
      ...allow(
        sa,
        `impersonate groups name=periscope-tier:${tier}`,
        'impersonate users name=carol@example.com',
        'impersonate authentication.k8s.io:userextras/audit.periscope.io/session-id',
        'impersonate authentication.k8s.io:userextras/audit.periscope.io/actor',
      ),
      ...deny(
        sa,
        ...others,
        'impersonate groups name=system:masters',
        'impersonate authentication.k8s.io:userextras/scopes',
        `impersonate serviceaccounts name=default in ${shellNs}`,
        `get pods in ${shellNs}`,
        'list pods',
        `get secrets in ${shellNs}`,
        `create pods in ${shellNs}`,
        `create serviceaccounts/token name=periscope-shell-${tier} in ${shellNs}`,
        `get configmaps in ${shellNs}`,
        'list namespaces',
      ),
    ];
  });
}

/** The provisioner writes pods, secrets and tier tokens in the shell namespace and nowhere else. */
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
      ...TIERS.map((t) => `create serviceaccounts/token name=periscope-shell-${t} in ${shellNs}`),
    ),
    ...deny(
      provisioner,
      `create serviceaccounts/token name=default in ${shellNs}`,
      `update pods in ${shellNs}`,
      `create apps:deployments in ${shellNs}`,
      `create rbac.authorization.k8s.io:roles in ${shellNs}`,
      `create rbac.authorization.k8s.io:rolebindings in ${shellNs}`,
      `create serviceaccounts in ${shellNs}`,
      'list pods',
      'list secrets',
      'create pods',
      ...elsewhere.flatMap((ns) => [
        `create pods in ${ns}`,
        `create secrets in ${ns}`,
        `get secrets in ${ns}`,
        `create pods/exec in ${ns}`,
        `create serviceaccounts/token name=periscope-shell-admin in ${ns}`,
        `create serviceaccounts/token name=default in ${ns}`,
      ]),
    ),
  ];
}

/** An identity's rights: may impersonate operators (narrowly), may never touch RBAC. */
function impersonatorExpectations(
  who: ReturnType<typeof serviceAccount>,
  namespaces: string[],
): Expectation[] {
  return [
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
      'create rbac.authorization.k8s.io:clusterroles',
      'create rbac.authorization.k8s.io:clusterrolebindings',
      'update rbac.authorization.k8s.io:clusterroles name=cluster-admin',
      'escalate rbac.authorization.k8s.io:clusterroles',
      'bind rbac.authorization.k8s.io:clusterroles',
      ...namespaces.flatMap((ns) => [
        `create rbac.authorization.k8s.io:roles in ${ns}`,
        `create rbac.authorization.k8s.io:rolebindings in ${ns}`,
        `update rbac.authorization.k8s.io:rolebindings in ${ns}`,
        `delete rbac.authorization.k8s.io:rolebindings in ${ns}`,
        `bind rbac.authorization.k8s.io:roles in ${ns}`,
      ]),
    ),
  ];
}

describe('periscope chart against the local apiserver', () => {
  const release = `psc-${id}`;
  const ns = `psc-srv-${id}`;
  const shellNs = `psc-shell-${id}`;
  const fullname = `${release}-periscope`;
  const server = serviceAccount(ns, fullname);

  beforeAll(async () => {
    await cluster.createNamespace(ns);
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
        clusterShell: { enabled: true, tiers: TIERS, namespace: shellNs },
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
          (e) => e.access !== `create secrets in ${ns}`,
        ),
      ),
    ).toEqual([]);
  });

  it('lets the server keep the agent CA in its Secret and read no other Secret of its namespace', async () => {
    expect(
      await accessMismatches(cluster, [
        ...allow(server, `get secrets name=periscope-agent-ca in ${ns}`, `create secrets in ${ns}`),
        ...deny(
          server,
          `get secrets name=${fullname}-oidc in ${ns}`,
          `list secrets in ${ns}`,
          `update secrets name=periscope-agent-ca in ${ns}`,
          `delete secrets name=periscope-agent-ca in ${ns}`,
        ),
      ]),
    ).toEqual([]);
  });

  it('narrows every shell ServiceAccount to its own tier and gives it no read access', async () => {
    expect(await accessMismatches(cluster, shellAccountExpectations(shellNs))).toEqual([]);
  });

  it('grants each tier what it should and nothing more', async () => {
    expect(await accessMismatches(cluster, tierExpectations(ns, true))).toEqual([]);
  });

  it('lets the server impersonate operators (in-cluster backend) but not touch RBAC', async () => {
    expect(await accessMismatches(cluster, impersonatorExpectations(server, [ns, shellNs]))).toEqual([]);
  });

  it('with real tokens: the provisioner mints a session token bound to a Secret, only in the shell namespace', async () => {
    const kc = cluster.kubeconfig(`${release}-server`, { token: await tokenFor(ns, fullname) });
    const secret = `periscope-shell-${id}`;
    await cluster.kubectlOk(['-n', shellNs, 'create', 'secret', 'generic', secret], { kubeconfig: kc });
    const minted = await cluster.kubectl(
      [
        '-n',
        shellNs,
        'create',
        'token',
        'periscope-shell-admin',
        '--bound-object-kind=Secret',
        `--bound-object-name=${secret}`,
      ],
      { kubeconfig: kc },
    );
    expect(minted.stderr).toBe('');
    expect(minted.stdout.trim().split('.')).toHaveLength(3);
    const defaultToken = await cluster.kubectl(['-n', shellNs, 'create', 'token', 'default'], {
      kubeconfig: kc,
    });
    expect(defaultToken.stderr).toMatch(/forbidden/);
    const elsewhere = await cluster.kubectl(['-n', 'default', 'create', 'secret', 'generic', 'x'], {
      kubeconfig: kc,
    });
    expect(elsewhere.stderr).toMatch(/forbidden/);
    // Session pods pass Pod Security "restricted"; a pod that does not is refused in this namespace.
    const ok = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], {
      kubeconfig: kc,
      input: restrictedPod(shellNs, `periscope-shell-${id}`),
    });
    expect(ok.stderr).toBe('');
    const loose = JSON.parse(restrictedPod(shellNs, 'loose')) as { spec: Record<string, unknown> };
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
  });

  it('with a real token: periscope-shell-admin acts as an admin operator, never as another tier, and reads nothing itself', async () => {
    const kc = cluster.kubeconfig(`${release}-shell-admin`, {
      token: await tokenFor(shellNs, 'periscope-shell-admin'),
    });
    const asAdmin = await cluster.kubectl(
      ['-n', ns, 'get', 'secrets', '--as', 'carol@example.com', '--as-group', 'periscope-tier:admin'],
      { kubeconfig: kc },
    );
    expect(asAdmin.stderr).toBe('');
    expect(asAdmin.code).toBe(0);
    const asRead = await cluster.kubectl(
      ['-n', ns, 'get', 'pods', '--as', 'carol@example.com', '--as-group', 'periscope-tier:read'],
      { kubeconfig: kc },
    );
    expect(asRead.stderr).toMatch(
      /groups "periscope-tier:read" is forbidden: .* cannot impersonate resource "groups"/,
    );
    const itself = await cluster.kubectl(['-n', ns, 'get', 'pods'], { kubeconfig: kc });
    expect(itself.stderr).toMatch(/forbidden/);
  });
});

describe('periscope-agent chart against the local apiserver', () => {
  const release = `pag-${id}`;
  const ns = `psc-agent-${id}`;
  const shellNs = `psc-ashell-${id}`;
  const fullname = `${release}-periscope-agent`;
  const agent = serviceAccount(ns, fullname);

  beforeAll(async () => {
    await cluster.createNamespace(ns);
    const manifests = render(
      'periscope-agent',
      {
        agent: { ...AGENT_REQUIRED, registrationToken: { value: 'one-time' } },
        clusterShell: { enabled: true, tiers: TIERS, namespace: shellNs },
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
          (e) => e.access !== `create secrets in ${ns}`,
        ),
      ),
    ).toEqual([]);
  });

  it('lets the agent impersonate operators narrowly and never create RBAC objects', async () => {
    expect(
      await accessMismatches(
        cluster,
        impersonatorExpectations(agent, [ns, shellNs, 'default', 'kube-system']),
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

  it('narrows every shell ServiceAccount to its own tier', async () => {
    expect(await accessMismatches(cluster, shellAccountExpectations(shellNs))).toEqual([]);
  });

  it('grants each tier what it should, and the admin tier nothing unless enabled', async () => {
    expect(await accessMismatches(cluster, tierExpectations(ns, false))).toEqual([]);
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
    ]);
    expect(install.status, install.stderr).toBe(0);
    expect(install.stdout).toContain('Periscope agent 0.1.0 for cluster edge-9');
    expect(install.stdout).toContain(`sessions in namespace ${shellNs}`);
    expect(
      await cluster.kubectlOk([
        '-n',
        shellNs,
        'get',
        'serviceaccount',
        'periscope-shell-admin',
        '-o',
        'name',
      ]),
    ).toBe('serviceaccount/periscope-shell-admin\n');
    // No --wait: without a controller-manager the removed shell Namespace stays Terminating.
    const uninstall = run(['uninstall', release, '--namespace', ns]);
    expect(uninstall.status, uninstall.stderr).toBe(0);
    const left = await cluster.kubectlOk([
      'get',
      'clusterrole,clusterrolebinding',
      '-l',
      `app.kubernetes.io/instance=${release}`,
      '-o',
      'name',
    ]);
    expect(left).toBe('');
  });
});
