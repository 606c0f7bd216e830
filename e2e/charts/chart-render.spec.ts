import { beforeAll, describe, expect, it } from 'vitest';

import { shellIdentityPolicySpec } from '../cluster-ops/shell-rbac';
import { AGENT_REQUIRED, FAIL_CASES, RENDER_CASES, SHELL_EGRESS } from './cases';
import {
  deploymentEnv,
  find,
  golden,
  helmBinary,
  lint,
  one,
  parseManifests,
  podSpec,
  render,
  template,
  type Container,
  type K8sObject,
  type PodSpec,
} from './helm';

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
}

const rulesOf = (o: K8sObject): Rule[] => (o as unknown as { rules?: Rule[] }).rules ?? [];

// A cold cache builds helm first (minutes), outside any test's timeout.
beforeAll(() => {
  helmBinary();
}, 45 * 60_000);

describe('helm lint --strict', () => {
  it('passes for the library chart', () => {
    const r = lint('periscope-common', {});
    expect(r.stderr).toBe('');
    expect(r.ok).toBe(true);
  });

  it.each(RENDER_CASES)('passes for $chart with $name ($about)', ({ chart, values }) => {
    const r = lint(chart, values);
    expect(r.stderr).toBe('');
    expect(r.ok).toBe(true);
    // Only the missing icon is reported, as INFO; no WARNING or ERROR.
    expect(r.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
    expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
  });
});

describe('golden renders (update: PERISCOPE_UPDATE_GOLDEN=1, then review the diff)', () => {
  it.each(RENDER_CASES)('$name: $about', ({ name, chart, values }) => {
    const [actual, expected] = golden(`${name}.golden`, render(chart, values));
    expect(actual).toBe(expected);
  });
});

describe('values the charts refuse, with the fix in the message', () => {
  it.each(FAIL_CASES)('$chart: $about', ({ chart, values, message }) => {
    const r = template(chart, values);
    expect(r.ok).toBe(false);
    expect(r.stderr).toMatch(message);
  });
});

describe('posture of every rendered value set', () => {
  const rendered = RENDER_CASES.map((c) => ({ ...c, objects: parseManifests(render(c.chart, c.values)) }));

  // mode=rbac-only renders no workload.
  const workloads = rendered.filter((c) => c.values['mode'] !== 'rbac-only');
  it.each(workloads)('$name: the Deployment is hardened', ({ chart, values, objects }) => {
    const deployment = one(objects, 'Deployment');
    const pod = podSpec(deployment);
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0] as Container & {
      livenessProbe?: { httpGet: { path: string } };
      readinessProbe?: { httpGet: { path: string } };
      lifecycle?: { preStop?: { sleep?: { seconds: number } } };
    };
    expect(c.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.livenessProbe?.httpGet.path).toBe('/healthz');
    expect(c.readinessProbe?.httpGet.path).toBe('/readyz');
    const strategy = (deployment as unknown as { spec: { strategy: { type: string } } }).spec.strategy;
    // One replica owns its sessions and volume; several share state and roll one pod at a time.
    expect(strategy.type).toBe(Number(values['replicaCount'] ?? 1) > 1 ? 'RollingUpdate' : 'Recreate');
    if (chart === 'periscope') {
      expect(c.lifecycle?.preStop?.sleep?.seconds).toBe(5);
      const annotations = (deployment as unknown as { spec: { template: K8sObject } }).spec.template.metadata
        .annotations;
      expect(Object.keys(annotations ?? {})).toEqual(
        expect.arrayContaining(['checksum/clusters', 'checksum/auth']),
      );
    }
  });

  it.each(rendered)(
    '$name: no Role or ClusterRole uses a wildcard; one that writes RBAC is narrowed by an admission policy of its name',
    ({ objects }) => {
      const policies = new Set(find(objects, 'ValidatingAdmissionPolicy').map((p) => p.metadata.name));
      for (const role of [...find(objects, 'Role'), ...find(objects, 'ClusterRole')]) {
        const name = role.metadata.name;
        for (const rule of rulesOf(role)) {
          expect(rule.verbs, name).not.toContain('*');
          expect(rule.resources ?? [], name).not.toContain('*');
          expect(rule.apiGroups ?? [], name).not.toContain('*');
          expect(rule.verbs, name).not.toEqual(expect.arrayContaining(['escalate']));
          if (rule.verbs.includes('bind')) expect(rule.resourceNames?.length ?? 0, name).toBeGreaterThan(0);
          if (!(rule.apiGroups ?? []).includes('rbac.authorization.k8s.io')) continue;
          expect(rule.verbs, name).not.toEqual(expect.arrayContaining(['update']));
          expect(rule.verbs, name).not.toEqual(expect.arrayContaining(['patch']));
          if (!rule.verbs.every((v) => ['get', 'list', 'watch'].includes(v)))
            expect(policies.has(name), `${name} writes RBAC without an admission policy named ${name}`).toBe(
              true,
            );
        }
      }
    },
  );

  it.each(rendered)('$name: secrets never land in a ConfigMap', ({ objects }) => {
    const configMaps = JSON.stringify(find(objects, 'ConfigMap'));
    for (const secret of ['inline-client-secret', 'one-time-token', 'clientSecret']) {
      expect(configMaps).not.toContain(secret);
    }
  });

  it('every impersonate rule on groups is narrowed to named groups, none a system group', () => {
    for (const { objects } of rendered) {
      for (const role of find(objects, 'ClusterRole')) {
        for (const rule of rulesOf(role).filter((r) => r.verbs.includes('impersonate'))) {
          if (!(rule.resources ?? []).includes('groups')) continue;
          expect(rule.resources, role.metadata.name).toEqual(['groups']);
          expect(rule.resourceNames?.length, role.metadata.name).toBeGreaterThan(0);
          for (const g of rule.resourceNames ?? []) expect(g).not.toMatch(/^system:/);
        }
      }
    }
  });
});

describe('cluster-shell RBAC', () => {
  const tiers = ['read', 'triage', 'write', 'maintain', 'admin'];

  it.each([
    ['periscope', { auth: { authorization: { mode: 'tier' } } }],
    ['periscope-agent', { agent: AGENT_REQUIRED }],
  ] as const)(
    '%s renders no per-tier shell identity, only what the provisioner needs to make one per session',
    (chart, base) => {
      const objects = parseManifests(
        render(chart, {
          ...base,
          clusterShell: { enabled: true, tiers, namespace: 'shells', networkPolicy: SHELL_EGRESS },
        }),
      );
      const provisionerSa = { kind: 'ServiceAccount', name: chart, namespace: 'periscope-system' };
      // The per-tier ServiceAccounts and impersonators of earlier versions are gone.
      expect(
        objects.filter((o) =>
          /^periscope-shell-(impersonator-)?(read|triage|write|maintain|admin)$/.test(o.metadata.name),
        ),
      ).toEqual([]);
      const provisioner = one(objects, 'Role', `${chart}-shell-provisioner`);
      expect(provisioner.metadata.namespace).toBe('shells');
      expect(rulesOf(provisioner)).toContainEqual({
        apiGroups: [''],
        resources: ['serviceaccounts'],
        verbs: ['create', 'delete', 'get', 'list', 'watch'],
      });
      expect(rulesOf(provisioner)).toContainEqual({
        apiGroups: [''],
        resources: ['serviceaccounts/token'],
        verbs: ['create'],
      });
      const identities = one(objects, 'ClusterRole', `${chart}-shell-identities`);
      expect(rulesOf(identities)).toEqual([
        {
          apiGroups: ['rbac.authorization.k8s.io'],
          resources: ['clusterroles', 'clusterrolebindings'],
          verbs: ['create', 'delete', 'get', 'list', 'watch'],
        },
      ]);
      expect(
        (
          one(objects, 'ClusterRoleBinding', `${chart}-shell-identities`) as unknown as {
            subjects: unknown[];
          }
        ).subjects,
      ).toEqual([provisionerSa]);
      // The admission policy is the one the tests apply (e2e/cluster-ops/shell-rbac.ts).
      const policy = one(objects, 'ValidatingAdmissionPolicy', `${chart}-shell-identities`);
      const squash = (v: unknown): unknown => JSON.parse(JSON.stringify(v).replace(/(\\n|\s)+/g, ' '));
      expect(squash((policy as unknown as { spec: unknown }).spec)).toEqual(
        squash(shellIdentityPolicySpec(`system:serviceaccount:periscope-system:${chart}`, 'shells')),
      );
      expect(
        (
          one(objects, 'ValidatingAdmissionPolicyBinding', `${chart}-shell-identities`) as unknown as {
            spec: unknown;
          }
        ).spec,
      ).toEqual({ policyName: `${chart}-shell-identities`, validationActions: ['Deny'] });
      const ns = one(objects, 'Namespace', 'shells');
      expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    },
  );

  it('renders nothing for the shell while it is off', () => {
    const objects = parseManifests(render('periscope', {}));
    expect(objects.filter((o) => o.metadata.labels?.['periscope.io/purpose'] === 'cluster-shell')).toEqual(
      [],
    );
  });

  it('does not create the release namespace itself', () => {
    const objects = parseManifests(
      render(
        'periscope-agent',
        {
          agent: AGENT_REQUIRED,
          clusterShell: { enabled: true, namespace: 'ops', networkPolicy: SHELL_EGRESS },
        },
        { namespace: 'ops' },
      ),
    );
    expect(find(objects, 'Namespace')).toEqual([]);
    expect(one(objects, 'Role', 'periscope-agent-shell-provisioner').metadata.namespace).toBe('ops');
  });

  it('binds the admin tier to cluster-admin only with clusterRBAC.adminTier.enabled', () => {
    const names = (adminTier: boolean): string[] =>
      find(
        parseManifests(
          render('periscope-agent', {
            agent: AGENT_REQUIRED,
            clusterRBAC: { enabled: true, adminTier: { enabled: adminTier } },
          }),
        ),
        'ClusterRoleBinding',
      )
        .map((b) => b.metadata.name)
        .filter((n) => n.startsWith('periscope-tier-'));
    expect(names(false)).not.toContain('periscope-tier-admin');
    expect(names(true)).toContain('periscope-tier-admin');
  });
});

describe('periscope-agent mode=rbac-only', () => {
  const user = 'arn:aws:iam::123456789012:role/periscope-server';
  const values = {
    mode: 'rbac-only',
    provisioner: { subject: { kind: 'User', name: user } },
    clusterShell: {
      enabled: true,
      namespace: 'periscope-shell',
      tiers: ['admin'],
      networkPolicy: SHELL_EGRESS,
    },
    clusterRBAC: { enabled: true, adminTier: { enabled: true } },
  };
  const objects = parseManifests(render('periscope-agent', values, { namespace: 'default' }));
  const subjectsOf = (o: K8sObject): unknown[] => (o as unknown as { subjects?: unknown[] }).subjects ?? [];

  it('renders no agent: no Deployment, ServiceAccount, Secret, state Role or tier binder', () => {
    for (const kind of ['Deployment', 'ServiceAccount', 'Secret'])
      expect(find(objects, kind), kind).toEqual([]);
    const names = objects.map((o) => o.metadata.name);
    expect(names.filter((n) => /-state$|-tier-binder$|-cluster-info$/.test(n))).toEqual([]);
  });

  it('binds the provisioner and impersonator roles to the given User, and nothing to a ServiceAccount', () => {
    const bindings = [...find(objects, 'RoleBinding'), ...find(objects, 'ClusterRoleBinding')].filter(
      (b) => !b.metadata.name.startsWith('periscope-tier-'),
    );
    expect(bindings.map((b) => b.metadata.name).sort()).toEqual([
      'periscope-agent-impersonator',
      'periscope-agent-shell-identities',
      'periscope-agent-shell-provisioner',
    ]);
    for (const b of bindings)
      expect(subjectsOf(b), b.metadata.name).toEqual([
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user },
      ]);
    expect(one(objects, 'RoleBinding').metadata.namespace).toBe('periscope-shell');
  });

  it('narrows that User with the shell-identity policy, and protects the shell namespace but not the release one', () => {
    const policy = find(
      objects,
      'ValidatingAdmissionPolicy',
      'periscope-agent-shell-identities',
    )[0] as unknown as {
      spec: { matchConditions: { expression: string }[] };
    };
    expect(policy.spec.matchConditions).toEqual([
      expect.objectContaining({ expression: `request.userInfo.username == '${user}'` }),
    ]);
    const protectedNs = JSON.stringify(
      find(objects, 'ValidatingAdmissionPolicy', 'periscope-agent-protected-namespaces'),
    );
    expect(protectedNs).toContain('"periscope-shell"');
    expect(protectedNs).not.toContain('"default"');
  });

  it('matches a Group subject by membership', () => {
    const group = parseManifests(
      render('periscope-agent', {
        ...values,
        provisioner: { subject: { kind: 'Group', name: 'periscope-servers' } },
      }),
    );
    const policy = JSON.stringify(
      find(group, 'ValidatingAdmissionPolicy', 'periscope-agent-shell-identities'),
    );
    expect(policy).toContain(`'periscope-servers' in request.userInfo.groups`);
  });
});

describe('restarts on configuration change', () => {
  const annotations = (values: Record<string, unknown>): Record<string, string> =>
    (
      one(parseManifests(render('periscope', values)), 'Deployment') as unknown as {
        spec: { template: K8sObject };
      }
    ).spec.template.metadata.annotations ?? {};

  it('changes the pod template when the clusters, auth or inline secret change', () => {
    const base = annotations({});
    const clusters = annotations({ clusters: [{ name: 'home', backend: 'in-cluster' }] });
    const auth = annotations({ auth: { session: { idleTimeoutSeconds: 600 } } });
    const secret1 = annotations({ oidcClientSecret: { value: 'one' } });
    const secret2 = annotations({ oidcClientSecret: { value: 'two' } });
    expect(clusters['checksum/clusters']).not.toBe(base['checksum/clusters']);
    expect(clusters['checksum/auth']).toBe(base['checksum/auth']);
    expect(auth['checksum/auth']).not.toBe(base['checksum/auth']);
    expect(secret1['checksum/oidc-secret']).not.toBe(secret2['checksum/oidc-secret']);
  });
});

describe('several replicas (replicaCount > 1)', () => {
  const replicas = RENDER_CASES.find((c) => c.name === 'server-replicas');
  if (replicas === undefined) throw new Error('the server-replicas render case is missing from cases.ts');
  const objects = parseManifests(render('periscope', replicas.values));
  const deployment = one(objects, 'Deployment') as unknown as {
    spec: {
      replicas: number;
      selector: { matchLabels: Record<string, string> };
      strategy: unknown;
      template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
    };
  };
  const selector = deployment.spec.selector.matchLabels;
  const HA_ENV = [
    'POD_IP',
    'PERISCOPE_REPLICA_ID',
    'PERISCOPE_REPLICA_URL',
    'PERISCOPE_REDIS_URL',
    'PERISCOPE_REDIS_KEY_PREFIX',
    'PERISCOPE_SESSION_KEY',
    'PERISCOPE_REPLICA_SECRET',
    'PERISCOPE_DATABASE_URL',
  ];

  it('runs three pods that roll one at a time, never below three', () => {
    expect(deployment.spec.replicas).toBe(3);
    expect(deployment.spec.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
    });
  });

  it('names each replica after its pod and gives the others its pod IP, through the downward API', () => {
    const env = deploymentEnv(objects);
    expect(env.get('POD_IP')).toEqual({
      name: 'POD_IP',
      valueFrom: { fieldRef: { fieldPath: 'status.podIP' } },
    });
    expect(env.get('PERISCOPE_REPLICA_ID')).toEqual({
      name: 'PERISCOPE_REPLICA_ID',
      valueFrom: { fieldRef: { fieldPath: 'metadata.name' } },
    });
    expect(env.get('PERISCOPE_REPLICA_URL')?.value).toBe('http://$(POD_IP):8080');
    // $(POD_IP) expands only from a variable defined earlier in the list.
    const names = (deployment.spec.template.spec.containers[0]?.env ?? []).map((e) => e.name);
    expect(names.indexOf('POD_IP')).toBeLessThan(names.indexOf('PERISCOPE_REPLICA_URL'));
    // The URL's port is the container's http port.
    const ports = (
      deployment.spec.template.spec.containers[0] as unknown as {
        ports: { name: string; containerPort: number }[];
      }
    ).ports;
    expect(ports.find((p) => p.name === 'http')?.containerPort).toBe(8080);
    expect(env.get('PERISCOPE_REDIS_KEY_PREFIX')?.value).toBe('prod-eu:');
  });

  it('takes every URL and key from the named Secrets, and renders no Secret of its own', () => {
    const env = deploymentEnv(objects);
    const ref = (name: string): unknown => env.get(name)?.valueFrom?.secretKeyRef;
    expect(ref('PERISCOPE_REDIS_URL')).toEqual({ name: 'periscope-redis', key: 'url' });
    expect(ref('PERISCOPE_DATABASE_URL')).toEqual({ name: 'periscope-postgres', key: 'uri' });
    expect(ref('PERISCOPE_SESSION_KEY')).toEqual({ name: 'periscope-ha', key: 'session-key' });
    expect(ref('PERISCOPE_REPLICA_SECRET')).toEqual({ name: 'periscope-ha', key: 'replica-secret' });
    for (const name of [
      'PERISCOPE_REDIS_URL',
      'PERISCOPE_DATABASE_URL',
      'PERISCOPE_SESSION_KEY',
      'PERISCOPE_REPLICA_SECRET',
    ])
      expect(env.get(name)?.value, name).toBeUndefined();
    expect(find(objects, 'Secret')).toEqual([]);
    expect(JSON.stringify(objects)).not.toMatch(/rediss?:\/\/|postgres(ql)?:\/\//);
  });

  it('one ha.existingSecret fills every reference with the default keys', () => {
    const env = deploymentEnv(
      parseManifests(
        render('periscope', {
          replicaCount: 2,
          ha: { existingSecret: 'periscope-ha' },
          persistence: { enabled: false },
        }),
      ),
    );
    expect(
      [
        'PERISCOPE_REDIS_URL',
        'PERISCOPE_DATABASE_URL',
        'PERISCOPE_SESSION_KEY',
        'PERISCOPE_REPLICA_SECRET',
      ].map((n) => env.get(n)?.valueFrom?.secretKeyRef),
    ).toEqual([
      { name: 'periscope-ha', key: 'redis-url' },
      { name: 'periscope-ha', key: 'database-url' },
      { name: 'periscope-ha', key: 'session-key' },
      { name: 'periscope-ha', key: 'replica-secret' },
    ]);
    expect(env.get('PERISCOPE_REDIS_KEY_PREFIX')?.value).toBe('periscope:');
  });

  it('keeps the data directory off any ReadWriteOnce claim: an emptyDir per pod', () => {
    expect(find(objects, 'PersistentVolumeClaim')).toEqual([]);
    const volumes = deployment.spec.template.spec['volumes'] as { name: string; emptyDir?: unknown }[];
    expect(volumes.find((v) => v.name === 'data')).toEqual({ name: 'data', emptyDir: {} });
  });

  it('lets one replica go at a time in a voluntary disruption', () => {
    const pdb = one(objects, 'PodDisruptionBudget') as unknown as { spec: Record<string, unknown> };
    expect(pdb.spec).toEqual({ maxUnavailable: 1, selector: { matchLabels: selector } });
    const min = one(
      parseManifests(
        render('periscope', {
          replicaCount: 3,
          ha: { existingSecret: 'periscope-ha' },
          persistence: { enabled: false },
          podDisruptionBudget: { minAvailable: 2 },
        }),
      ),
      'PodDisruptionBudget',
    ) as unknown as { spec: Record<string, unknown> };
    expect(min.spec).toEqual({ minAvailable: 2, selector: { matchLabels: selector } });
  });

  it('the UI and agent tunnel Services select every replica, without stickiness', () => {
    const services = find(objects, 'Service') as unknown as {
      metadata: { name: string };
      spec: { selector: Record<string, string>; sessionAffinity?: string };
    }[];
    expect(services.map((s) => s.metadata.name).sort()).toEqual(['periscope', 'periscope-agent-tunnel']);
    for (const s of services) {
      expect(s.spec.selector, s.metadata.name).toEqual(selector);
      expect(s.spec.sessionAffinity, s.metadata.name).toBeUndefined();
    }
    // The selector matches the pods' labels, and only the labels every revision shares.
    expect(deployment.spec.template.metadata.labels).toMatchObject(selector);
  });

  it('spreads the replicas over nodes and zones, softly, unless constraints are given', () => {
    expect(deployment.spec.template.spec['topologySpreadConstraints']).toEqual(
      ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].map((topologyKey) => ({
        maxSkew: 1,
        topologyKey,
        whenUnsatisfiable: 'ScheduleAnyway',
        labelSelector: { matchLabels: selector },
        matchLabelKeys: ['pod-template-hash'],
      })),
    );
    const own = [
      {
        maxSkew: 1,
        topologyKey: 'topology.kubernetes.io/zone',
        whenUnsatisfiable: 'DoNotSchedule',
        labelSelector: { matchLabels: selector },
      },
    ];
    const custom = podSpec(
      one(
        parseManifests(render('periscope', { ...replicas.values, topologySpreadConstraints: own })),
        'Deployment',
      ),
    );
    expect(custom['topologySpreadConstraints']).toEqual(own);
  });

  it('lets the replicas reach each other on the HTTP port through the NetworkPolicy', () => {
    const np = one(objects, 'NetworkPolicy') as unknown as {
      spec: {
        ingress: { ports: { port: unknown }[]; from?: unknown[] }[];
        egress: { ports: { port: unknown }[]; to?: unknown[] }[];
      };
    };
    const peers = [{ podSelector: { matchLabels: selector } }];
    expect(np.spec.ingress).toContainEqual({ ports: [{ port: 'http', protocol: 'TCP' }], from: peers });
    expect(np.spec.egress).toContainEqual({ ports: [{ port: 8080, protocol: 'TCP' }], to: peers });
  });

  it('one replica without Redis renders none of it: no shared-state variables, Recreate, no spread', () => {
    const single = parseManifests(render('periscope', {}));
    const env = deploymentEnv(single);
    for (const name of HA_ENV) expect(env.has(name), name).toBe(false);
    const pod = podSpec(one(single, 'Deployment'));
    expect(pod['topologySpreadConstraints']).toBeUndefined();
    expect(one(single, 'PersistentVolumeClaim').metadata.name).toBe('periscope-data');
  });

  it('one replica may keep its audit in PostgreSQL alone (no Redis, no keys required)', () => {
    const env = deploymentEnv(
      parseManifests(render('periscope', { ha: { database: { existingSecret: 'pg' } } })),
    );
    expect(env.get('PERISCOPE_DATABASE_URL')?.valueFrom?.secretKeyRef).toEqual({
      name: 'pg',
      key: 'database-url',
    });
    expect(env.has('PERISCOPE_REDIS_URL')).toBe(false);
  });
});
