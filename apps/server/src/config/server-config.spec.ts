import { ConfigError } from '@periscope/config';
import { describe, expect, it } from 'vitest';

import { configForLog, loadServerConfig } from './server-config';

const AUTH_TIER = `
oidc:
  issuer: https://idp.example.com
  clientID: periscope
  clientSecret: s3cr3t-client-value
authorization:
  mode: tier
  groupTiers:
    platform-admins: admin
`;

function files(map: Record<string, string>) {
  return (path: string): string => {
    const text = map[path];
    if (text === undefined) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
    return text;
  };
}

function load(env: Record<string, string>, map: Record<string, string> = { '/auth.yaml': AUTH_TIER }) {
  return loadServerConfig({ PERISCOPE_AUTH_FILE: '/auth.yaml', ...env }, files(map));
}

function problemsOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}

describe(loadServerConfig.name, () => {
  it('accepts every variable of the guide with its documented default', () => {
    const c = load({});
    expect(c.clusterShell).toEqual({
      enabled: false,
      mode: 'bash',
      tiers: ['admin'],
      namespace: 'periscope-system',
      idleSeconds: 1200,
      podStartTimeoutSeconds: 30,
      transcriptMaxBytes: 1_048_576,
      maxSessionsPerUser: 2,
      maxSessionsTotal: 10,
      image: 'registry.example.com/periscope/periscope-shell:0.1.0',
      imagePullPolicy: 'IfNotPresent',
      maxSessionSeconds: 28_800,
      maxSessionWarnSeconds: 300,
      readinessSeconds: 60,
      modeByTier: {},
      pod: {},
    });
    expect(c.exec).toEqual({
      idleSeconds: 600,
      idleWarnSeconds: 30,
      heartbeatSeconds: 20,
      maxSessionsPerUser: 5,
      maxSessionsTotal: 50,
    });
  });

  it('accepts every guide variable when set explicitly', () => {
    const c = load({
      PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
      PERISCOPE_CLUSTER_SHELL_MODE: 'bash',
      PERISCOPE_CLUSTER_SHELL_TIERS: 'admin,maintain',
      PERISCOPE_CLUSTER_SHELL_NAMESPACE: 'shells',
      PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS: '900',
      PERISCOPE_CLUSTER_SHELL_POD_START_TIMEOUT_SECONDS: '45',
      PERISCOPE_CLUSTER_SHELL_TRANSCRIPT_MAX_BYTES: '2048',
      PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '3',
      PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_TOTAL: '20',
      PERISCOPE_CLUSTER_SHELL_IMAGE: 'registry.local/shell:1',
      PERISCOPE_CLUSTER_SHELL_IMAGE_PULL_POLICY: 'Always',
      PERISCOPE_EXEC_IDLE_SECONDS: '300',
      PERISCOPE_EXEC_IDLE_WARN_SECONDS: '10',
      PERISCOPE_EXEC_HEARTBEAT_SECONDS: '15',
      PERISCOPE_EXEC_MAX_SESSIONS_PER_USER: '7',
      PERISCOPE_EXEC_MAX_SESSIONS_TOTAL: '70',
    });
    expect(c.clusterShell).toMatchObject({
      enabled: true,
      tiers: ['admin', 'maintain'],
      namespace: 'shells',
      idleSeconds: 900,
    });
    expect(c.clusterShell).toMatchObject({
      podStartTimeoutSeconds: 45,
      transcriptMaxBytes: 2048,
      maxSessionsPerUser: 3,
    });
    expect(c.clusterShell).toMatchObject({
      maxSessionsTotal: 20,
      image: 'registry.local/shell:1',
      imagePullPolicy: 'Always',
    });
    expect(c.exec).toEqual({
      idleSeconds: 300,
      idleWarnSeconds: 10,
      heartbeatSeconds: 15,
      maxSessionsPerUser: 7,
      maxSessionsTotal: 70,
    });
  });

  it('reads the per-tier modes and the pod template variables', () => {
    const c = load({
      PERISCOPE_CLUSTER_SHELL_MODE_BY_TIER: 'read=kubectl,triage=kubectl,admin=bash',
      PERISCOPE_CLUSTER_SHELL_POD_RESOURCES: '{"requests":{"cpu":"100m","memory":"128Mi"}}',
      PERISCOPE_CLUSTER_SHELL_POD_TOLERATIONS:
        '[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]',
      PERISCOPE_CLUSTER_SHELL_POD_NODE_SELECTOR: '{"pool":"ops"}',
      PERISCOPE_CLUSTER_SHELL_POD_PRIORITY_CLASS_NAME: 'ops-high',
      PERISCOPE_CLUSTER_SHELL_POD_LABELS: '{"team":"sre"}',
      PERISCOPE_CLUSTER_SHELL_POD_ANNOTATIONS: '{"example.com/owner":"sre"}',
      PERISCOPE_CLUSTER_SHELL_POD_IMAGE_PULL_SECRETS: 'regcred,mirror',
    });
    expect(c.clusterShell.modeByTier).toEqual({ read: 'kubectl', triage: 'kubectl', admin: 'bash' });
    expect(c.clusterShell.pod).toEqual({
      resources: { requests: { cpu: '100m', memory: '128Mi' } },
      tolerations: [{ key: 'dedicated', operator: 'Exists', effect: 'NoSchedule' }],
      nodeSelector: { pool: 'ops' },
      priorityClassName: 'ops-high',
      labels: { team: 'sre' },
      annotations: { 'example.com/owner': 'sre' },
      imagePullSecrets: ['regcred', 'mirror'],
    });
  });

  it('names the variable of a bad per-tier mode or pod template value', () => {
    const msg = problemsOf(() =>
      load({
        PERISCOPE_CLUSTER_SHELL_MODE_BY_TIER: 'read=zsh',
        PERISCOPE_CLUSTER_SHELL_POD_LABELS: '{"app.kubernetes.io/name":"x"}',
        PERISCOPE_CLUSTER_SHELL_POD_RESOURCES: '{"requests":',
        PERISCOPE_CLUSTER_SHELL_POD_IMAGE_PULL_SECRETS: 'Reg_Cred',
      }),
    );
    expect(msg).toMatch(/PERISCOPE_CLUSTER_SHELL_MODE_BY_TIER.*tier=mode pairs/);
    expect(msg).toMatch(/PERISCOPE_CLUSTER_SHELL_POD_LABELS.*app\.kubernetes\.io\/name/);
    expect(msg).toMatch(/PERISCOPE_CLUSTER_SHELL_POD_RESOURCES.*JSON/);
    expect(msg).toMatch(/PERISCOPE_CLUSTER_SHELL_POD_IMAGE_PULL_SECRETS.*Secret names/);
  });

  it("checks a cluster's idleSeconds against the idle warning and the maximum session length", () => {
    const clusters =
      'clusters:\n  - { name: a, backend: agent, clusterShell: { idleSeconds: 60 } }\n  - { name: b, backend: agent, clusterShell: { idleSeconds: 7200 } }\n';
    const msg = problemsOf(() =>
      load(
        {
          PERISCOPE_CLUSTERS_FILE: '/clusters.yaml',
          PERISCOPE_EXEC_IDLE_WARN_SECONDS: '90',
          PERISCOPE_EXEC_IDLE_SECONDS: '600',
          PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS: '600',
          PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS: '3600',
        },
        { '/auth.yaml': AUTH_TIER, '/clusters.yaml': clusters },
      ),
    );
    expect(msg).toMatch(
      /clusters\[0\]\.clusterShell\.idleSeconds.*more than PERISCOPE_EXEC_IDLE_WARN_SECONDS \(90\)/,
    );
    expect(msg).toMatch(
      /clusters\[1\]\.clusterShell\.idleSeconds.*at most PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS \(3600\)/,
    );
  });

  it('lists every invalid variable in one message with the value and what is allowed', () => {
    const msg = problemsOf(() =>
      load({
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'maybe',
        PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS: 'ten',
        PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '0',
        PERISCOPE_CLUSTER_SHELL_TIERS: 'admin,superuser',
        PERISCOPE_CLUSTER_SHELL_NAMESPACE: 'Bad_Namespace',
        PERISCOPE_CLUSTER_SHELL_IMAGE_PULL_POLICY: 'Sometimes',
        PERISCOPE_CLUSTER_SHELL_MODE: 'zsh',
      }),
    );
    expect(msg).toContain('invalid server configuration (7 problems)');
    expect(msg).toContain('PERISCOPE_CLUSTER_SHELL_ENABLED = "maybe": expected true or false');
    expect(msg).toContain(
      'PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS = "ten": expected a whole number from 60 to 86400',
    );
    expect(msg).toContain(
      'PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER = "0": expected a whole number from 1 to 1000',
    );
    expect(msg).toContain(
      'PERISCOPE_CLUSTER_SHELL_TIERS = "admin,superuser": expected a comma-separated list of read, triage, write, maintain, admin (not superuser)',
    );
    expect(msg).toContain('PERISCOPE_CLUSTER_SHELL_NAMESPACE = "Bad_Namespace": expected a DNS label');
    expect(msg).toContain(
      'PERISCOPE_CLUSTER_SHELL_IMAGE_PULL_POLICY = "Sometimes": expected one of Always, IfNotPresent, Never',
    );
    expect(msg).toContain('PERISCOPE_CLUSTER_SHELL_MODE = "zsh": expected one of bash, kubectl');
  });

  it('refuses an out-of-range value instead of silently using the default', () => {
    expect(problemsOf(() => load({ PERISCOPE_EXEC_HEARTBEAT_SECONDS: '-1' }))).toContain(
      'PERISCOPE_EXEC_HEARTBEAT_SECONDS = "-1": expected a whole number from 5 to 300',
    );
  });

  it('refuses a max-length warning that is not shorter than the maximum length', () => {
    expect(
      problemsOf(() =>
        load({
          PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS: '600',
          PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS: '600',
          PERISCOPE_CLUSTER_SHELL_MAX_SESSION_WARN_SECONDS: '600',
        }),
      ),
    ).toContain(
      'PERISCOPE_CLUSTER_SHELL_MAX_SESSION_WARN_SECONDS = "600": expected less than PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS (600), or 0 for no warning',
    );
    const off = load({
      PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS: '600',
      PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS: '600',
      PERISCOPE_CLUSTER_SHELL_MAX_SESSION_WARN_SECONDS: '0',
    });
    expect(off.clusterShell.maxSessionWarnSeconds).toBe(0);
  });

  it('refuses the cluster shell without tier mode and says how to fix it', () => {
    const shared = AUTH_TIER.replace('mode: tier', 'mode: shared');
    const msg = problemsOf(() => load({ PERISCOPE_CLUSTER_SHELL_ENABLED: 'true' }, { '/auth.yaml': shared }));
    expect(msg).toContain(
      'PERISCOPE_CLUSTER_SHELL_ENABLED = "true": expected authorization.mode: tier in the auth file (it is "shared")',
    );
    expect(msg).toContain('Fix: set authorization.mode: tier');
    expect(msg).toContain('or set PERISCOPE_CLUSTER_SHELL_ENABLED=false');
  });

  describe('clusters file', () => {
    const withClusters = (yaml: string) =>
      load(
        { PERISCOPE_CLUSTERS_FILE: '/clusters.yaml' },
        { '/auth.yaml': AUTH_TIER, '/clusters.yaml': yaml },
      );

    it('parses each backend with its fields and exec overrides', () => {
      const c = withClusters(`
clusters:
  - name: prod-eu
    backend: eks
    arn: arn:aws:eks:eu-west-1:123456789012:cluster/prod-eu
    region: eu-west-1
    environment: prod
    tags: { team: platform }
    exec: { enabled: false, maxSessionsTotal: 5 }
  - name: lab
    backend: kubeconfig
    kubeconfigPath: /etc/kube/lab.yaml
    kubeconfigContext: lab-admin
  - name: home
    backend: in-cluster
  - name: edge-1
    backend: agent
`);
      expect(c.clusters.map((x) => [x.name, x.backend])).toEqual([
        ['prod-eu', 'eks'],
        ['lab', 'kubeconfig'],
        ['home', 'in-cluster'],
        ['edge-1', 'agent'],
      ]);
      expect(c.clusters[0]).toMatchObject({
        arn: 'arn:aws:eks:eu-west-1:123456789012:cluster/prod-eu',
        region: 'eu-west-1',
        exec: { enabled: false, maxSessionsTotal: 5 },
      });
      expect(c.clusters[1]).toMatchObject({
        kubeconfigPath: '/etc/kube/lab.yaml',
        kubeconfigContext: 'lab-admin',
      });
    });

    it('reports unknown backend, duplicate name, missing backend field, bad name and bad override together', () => {
      const msg = problemsOf(() =>
        withClusters(`
clusters:
  - name: a
    backend: gke
  - name: a
    backend: agent
  - name: c
    backend: eks
    region: eu-west-1
  - name: Not_A_Label
    backend: in-cluster
  - name: d
    backend: kubeconfig
  - name: e
    backend: agent
    exec: { idleSeconds: 0 }
`),
      );
      expect(msg).toContain(
        '/clusters.yaml: clusters[0].backend = "gke": expected one of eks, kubeconfig, in-cluster, agent',
      );
      expect(msg).toContain(
        '/clusters.yaml: clusters[1].name = "a": expected a unique name (clusters[0] already uses it)',
      );
      expect(msg).toContain('/clusters.yaml: clusters[2].arn: expected a value (required for backend eks)');
      expect(msg).toContain('/clusters.yaml: clusters[3].name = "Not_A_Label": expected a DNS label');
      expect(msg).toContain(
        '/clusters.yaml: clusters[4].kubeconfigPath: expected a value (required for backend kubeconfig)',
      );
      expect(msg).toContain(
        '/clusters.yaml: clusters[5].exec.idleSeconds = "0": expected a whole number from 60 to 86400',
      );
      expect(msg).toContain('(6 problems)');
    });

    it('names a clusters file that cannot be read', () => {
      expect(problemsOf(() => load({ PERISCOPE_CLUSTERS_FILE: '/nope.yaml' }))).toContain(
        'PERISCOPE_CLUSTERS_FILE = "/nope.yaml": expected a readable file (ENOENT)',
      );
    });
  });

  describe('auth', () => {
    it('requires an auth file in oidc mode', () => {
      expect(problemsOf(() => loadServerConfig({}, files({})))).toContain(
        'PERISCOPE_AUTH_FILE: expected the path of an auth file with an oidc section',
      );
    });

    it('allows dev users only on loopback and only when asked for explicitly', () => {
      const dev = 'dev:\n  users:\n    - subject: alice\n      groups: [platform-admins]\n';
      const c = load({ PERISCOPE_AUTH_MODE: 'dev' }, { '/auth.yaml': dev });
      expect(c.auth.devUsers).toEqual([
        { subject: 'alice', email: 'alice@local', groups: ['platform-admins'] },
      ]);
      expect(
        problemsOf(() =>
          load({ PERISCOPE_AUTH_MODE: 'dev', PERISCOPE_LISTEN_ADDRESS: '0.0.0.0' }, { '/auth.yaml': dev }),
        ),
      ).toContain('PERISCOPE_LISTEN_ADDRESS = "0.0.0.0": expected a loopback address');
      // Without PERISCOPE_AUTH_MODE=dev the dev users are inert and OIDC is required.
      expect(problemsOf(() => load({}, { '/auth.yaml': dev }))).toContain(
        'expected an auth file with oidc.issuer and oidc.clientID',
      );
    });

    it('refuses OIDC in shared mode without allowedGroups unless allowAnyUser says so', () => {
      const shared = AUTH_TIER.replace('mode: tier', 'mode: shared');
      const msg = problemsOf(() => load({}, { '/auth.yaml': shared }));
      expect(msg).toContain(
        'PERISCOPE_AUTH_FILE = "/auth.yaml": expected an auth file that says who may sign in: authorization.mode is shared',
      );
      expect(msg).toContain('list the IdP groups allowed to sign in under authorization.allowedGroups');
      expect(msg).toContain('set authorization.allowAnyUser: true to accept this on purpose');
      // The chart default (mode omitted) is shared too.
      const noMode = AUTH_TIER.replace('  mode: tier\n', '');
      expect(problemsOf(() => load({}, { '/auth.yaml': noMode }))).toContain('who may sign in');

      const listed = shared.replace('  groupTiers:', '  allowedGroups: [ops]\n  groupTiers:');
      expect(load({}, { '/auth.yaml': listed }).auth.authorization.allowedGroups).toEqual(['ops']);
      const optIn = shared.replace('  groupTiers:', '  allowAnyUser: true\n  groupTiers:');
      expect(load({}, { '/auth.yaml': optIn }).auth.authorization.allowAnyUser).toBe(true);
      expect(load({}).auth.authorization.allowAnyUser).toBe(false); // tier mode needs no opt-in
      const notBool = shared.replace('  groupTiers:', '  allowAnyUser: "yes"\n  groupTiers:');
      expect(problemsOf(() => load({}, { '/auth.yaml': notBool }))).toContain(
        'authorization.allowAnyUser = "yes": expected true or false',
      );
      // Dev mode has its fixed users on loopback: nothing to opt into.
      const dev = 'dev:\n  users:\n    - subject: alice\n';
      expect(load({ PERISCOPE_AUTH_MODE: 'dev' }, { '/auth.yaml': dev }).auth.authorization.mode).toBe(
        'shared',
      );
    });

    it.each([
      ['""', 'it is empty'],
      ['"system:"', 'it starts with "system:"'],
      ['"System:oidc:"', 'it starts with "system:"'],
      ['"sys"', 'an IdP group could complete it to "system:…" ("sys" + "tem:masters")'],
      ['"system"', '("system" + ":masters")'],
      ['42', 'it is not a string'],
    ])('refuses the groupPrefix %s', (prefix, why) => {
      const raw = AUTH_TIER.replace('mode: tier', `mode: raw\n  groupPrefix: ${prefix}`);
      const msg = problemsOf(() => load({}, { '/auth.yaml': raw }));
      expect(msg).toContain('/auth.yaml: authorization.groupPrefix');
      expect(msg).toContain(why);
      expect(msg).toContain('use e.g. "periscope:" (the default)');
    });

    it('accepts a safe groupPrefix and keeps the default when none is given', () => {
      const raw = AUTH_TIER.replace('mode: tier', 'mode: raw\n  groupPrefix: "oidc:"');
      expect(load({}, { '/auth.yaml': raw }).auth.authorization.groupPrefix).toBe('oidc:');
      expect(load({}).auth.authorization.groupPrefix).toBe('periscope:');
    });

    it('refuses system: groups and subjects wherever the auth file names them', () => {
      const bad = `${AUTH_TIER.replace('platform-admins: admin', 'platform-admins: admin\n    system:masters: admin')}
  allowedGroups: [ops, "system:authenticated"]
  auditAdminGroups: ["SYSTEM:auditors"]
dev:
  users:
    - subject: system:kube-controller-manager
      groups: [ops, system:masters]
`;
      const msg = problemsOf(() => load({}, { '/auth.yaml': bad }));
      for (const path of [
        'authorization.groupTiers.system:masters = "system:masters"',
        'authorization.allowedGroups[1] = "system:authenticated"',
        'authorization.auditAdminGroups[0] = "SYSTEM:auditors"',
        'dev.users[0].subject = "system:kube-controller-manager": expected a subject that does not start with "system:"',
        'dev.users[0].groups[1] = "system:masters"',
      ])
        expect(msg).toContain(`/auth.yaml: ${path}`);
      expect(msg).toContain('Periscope drops such IdP groups at sign-in, so this entry could never match');
    });

    it('rejects unknown tiers in groupTiers', () => {
      const bad = AUTH_TIER.replace('platform-admins: admin', 'platform-admins: root');
      expect(problemsOf(() => load({}, { '/auth.yaml': bad }))).toContain(
        '/auth.yaml: authorization.groupTiers.platform-admins = "root": expected one of read, triage, write, maintain, admin',
      );
    });
  });

  it('never puts secrets in the logged configuration', () => {
    const c = load({ PERISCOPE_OIDC_CLIENT_SECRET: 'env-secret-value-123' });
    expect(c.auth.oidc?.clientSecret).toBe('env-secret-value-123');
    const logged = JSON.stringify(configForLog(c));
    expect(logged).not.toContain('env-secret-value-123');
    expect(logged).not.toContain('s3cr3t-client-value');
    expect(logged).toContain('"clientSecret":"<redacted>"');
    expect(logged).toContain('"issuer":"https://idp.example.com"');
  });
});
