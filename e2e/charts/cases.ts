import type { ChartName } from './helm';

/** A value set rendered by `helm template`; its output is kept in e2e/charts/golden/<name>.golden. */
export interface RenderCase {
  name: string;
  chart: ChartName;
  /** what the case is for, shown in the test name */
  about: string;
  values: Record<string, unknown>;
}

/** A value set the chart must refuse, with the message (or part of it) the operator sees. */
export interface FailCase {
  chart: ChartName;
  about: string;
  values: Record<string, unknown>;
  message: RegExp;
}

const OIDC = {
  oidc: { issuer: 'https://login.example.com/realms/ops', clientID: 'periscope' },
};

/** OIDC in shared mode, as a chart must say it: who may sign in. */
const OIDC_SHARED = { ...OIDC, authorization: { allowedGroups: ['platform-team'] } };

/**
 * The shell egress policy needs the apiserver's addresses; `helm template` cannot look them up,
 * so every value set with the cluster shell on gives them, as a GitOps install would.
 */
export const SHELL_EGRESS = { apiserver: { cidrs: ['10.96.0.1/32', '172.18.0.2/32'] } };

/** Tier authorization as the guide's §2 recipe has it. */
const TIER_AUTH = {
  ...OIDC,
  authorization: { mode: 'tier', groupTiers: { 'platform-admins': 'admin', sre: 'maintain', devs: 'read' } },
};

export const AGENT_REQUIRED = {
  serverURL: 'https://periscope-tunnel.example.com:8443',
  clusterName: 'edge-1',
};

export const RENDER_CASES: RenderCase[] = [
  { name: 'server-defaults', chart: 'periscope', about: 'chart defaults', values: {} },
  {
    name: 'server-cluster-shell',
    chart: 'periscope',
    about: 'cluster shell on, as in the guide §2, with an in-cluster backend',
    values: {
      publicURL: 'https://periscope.example.com',
      clusters: [{ name: 'home', backend: 'in-cluster' }],
      auth: TIER_AUTH,
      oidcClientSecret: { existingSecret: 'periscope-oidc', existingSecretKey: 'secret' },
      clusterRBAC: { enabled: true, adminTier: { enabled: true } },
      clusterShell: { enabled: true, namespace: 'periscope-shells', networkPolicy: SHELL_EGRESS },
    },
  },
  {
    name: 'server-all-tiers',
    chart: 'periscope',
    about: 'every tier may open a shell, shell namespace = release namespace (not created)',
    values: {
      auth: {
        ...OIDC,
        authorization: { mode: 'tier', groupTiers: { sre: 'maintain' }, defaultTier: 'read' },
      },
      clusterRBAC: { enabled: true },
      clusterShell: {
        enabled: true,
        tiers: ['read', 'triage', 'write', 'maintain', 'admin'],
        namespace: 'periscope-system',
        idleSeconds: 3600,
        maxSessionsPerUser: 3,
        maxSessionsTotal: 30,
        networkPolicy: {
          dns: { to: [{ namespaceSelector: {}, podSelector: { matchLabels: { 'k8s-app': 'coredns' } } }] },
          apiserver: { cidrs: ['192.168.10.0/28', 'fd00:10::1/128'], ports: [443] },
          extraEgress: [
            { to: [{ ipBlock: { cidr: '10.20.0.0/16' } }], ports: [{ port: 3128, protocol: 'TCP' }] },
          ],
        },
      },
    },
  },
  {
    name: 'server-custom-image',
    chart: 'periscope',
    about: 'mirrored images, inline OIDC secret, no persistence',
    values: {
      image: { repository: 'registry.example.com/mirror/periscope', tag: '0.1.0-rc.1', pullPolicy: 'Always' },
      imagePullSecrets: [{ name: 'mirror-pull' }],
      auth: { ...OIDC, authorization: { allowAnyUser: true } },
      oidcClientSecret: { value: 'inline-client-secret' },
      clusterShell: {
        image: {
          repository: 'registry.example.com/mirror/periscope-shell',
          tag: '2024.1',
          pullPolicy: 'Always',
        },
      },
      persistence: { enabled: false },
      logLevel: 'debug',
      exec: { idleSeconds: 900, maxSessionsPerUser: 10 },
    },
  },
  {
    name: 'server-ingress',
    chart: 'periscope',
    about: 'Ingress with TLS; the public URL follows the host',
    values: {
      auth: OIDC_SHARED,
      ingress: {
        enabled: true,
        className: 'nginx',
        host: 'periscope.example.com',
        annotations: { 'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600' },
        tls: { enabled: true, secretName: 'periscope-tls' },
      },
      allowedOrigins: ['https://ops.example.com'],
    },
  },
  {
    name: 'server-network-policy',
    chart: 'periscope',
    about: 'NetworkPolicy, agent tunnel (from an agent cluster) and ServiceMonitor',
    values: {
      auth: OIDC_SHARED,
      clusters: [
        { name: 'prod-eu', backend: 'agent', environment: 'prod' },
        { name: 'lab', backend: 'kubeconfig', kubeconfigPath: '/etc/periscope/kubeconfigs/lab' },
      ],
      agentTunnel: {
        url: 'https://periscope-tunnel.example.com:8443',
        extraSANs: ['periscope-tunnel.internal.example.com'],
        caSecret: 'periscope-agent-ca',
        service: {
          annotations: { 'service.beta.kubernetes.io/aws-load-balancer-type': 'nlb' },
          loadBalancerSourceRanges: ['203.0.113.0/24'],
        },
      },
      networkPolicy: {
        enabled: true,
        ingress: {
          from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } }],
        },
        egress: { extra: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8' } }], ports: [{ port: 5432 }] }] },
      },
      metrics: { serviceMonitor: { enabled: true, labels: { release: 'prometheus' } } },
      extraVolumes: [{ name: 'kubeconfigs', secret: { secretName: 'lab-kubeconfig' } }],
      extraVolumeMounts: [{ name: 'kubeconfigs', mountPath: '/etc/periscope/kubeconfigs', readOnly: true }],
    },
  },
  {
    name: 'server-shell-pod-template',
    chart: 'periscope',
    about:
      'shell mode per tier and pod template server-wide; per-cluster clusterShell and inClusterServer pass through',
    values: {
      auth: TIER_AUTH,
      clusters: [
        {
          name: 'lab',
          backend: 'kubeconfig',
          kubeconfigPath: '/etc/periscope/kubeconfigs/lab.yaml',
          inClusterServer: 'https://kubernetes.default.svc',
          clusterShell: {
            modeByTier: { admin: 'kubectl' },
            idleSeconds: 600,
            maxSessionsTotal: 2,
            pod: { tolerations: [{ key: 'lab', operator: 'Exists' }], labels: { env: 'lab' } },
          },
        },
        { name: 'prod', backend: 'in-cluster', clusterShell: { enabled: false } },
      ],
      clusterShell: {
        enabled: true,
        tiers: ['read', 'triage', 'admin'],
        modeByTier: { triage: 'kubectl', read: 'kubectl' },
        pod: {
          resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '1', memory: '1Gi' } },
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'ops', effect: 'NoSchedule' }],
          priorityClassName: 'ops-high',
          labels: { team: 'sre' },
          annotations: { 'example.com/owner': 'SRE, on call' },
          imagePullSecrets: ['regcred', 'mirror'],
        },
        networkPolicy: SHELL_EGRESS,
      },
    },
  },
  {
    name: 'server-replicas',
    chart: 'periscope',
    about:
      'three replicas: Redis, PostgreSQL, session key and replica secret from Secrets, agent CA in a Secret, NetworkPolicy',
    values: {
      replicaCount: 3,
      publicURL: 'https://periscope.example.com',
      auth: OIDC_SHARED,
      clusters: [
        { name: 'edge-1', backend: 'agent' },
        { name: 'home', backend: 'in-cluster' },
      ],
      agentTunnel: { url: 'https://periscope-tunnel.example.com:8443', caSecret: 'periscope-agent-ca' },
      ha: {
        redis: { existingSecret: 'periscope-redis', existingSecretKey: 'url', keyPrefix: 'prod-eu:' },
        database: { existingSecret: 'periscope-postgres', existingSecretKey: 'uri' },
        sessionKey: { existingSecret: 'periscope-ha' },
        replicaSecret: { existingSecret: 'periscope-ha' },
      },
      persistence: { enabled: false },
      networkPolicy: {
        enabled: true,
        ingress: {
          from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress' } } }],
        },
        egress: { tcpPorts: [443, 6443, 6379, 5432] },
      },
    },
  },
  {
    name: 'agent-minimal',
    chart: 'periscope-agent',
    about: 'agent mode: only the required values',
    values: { agent: AGENT_REQUIRED },
  },
  {
    name: 'agent-cluster-shell',
    chart: 'periscope-agent',
    about: 'agent mode with cluster shell, all tiers, tier RBAC incl. admin, inline token',
    values: {
      agent: {
        ...AGENT_REQUIRED,
        registrationURL: 'https://periscope.example.com',
        serverCAHash: `sha256:${'ab'.repeat(32)}`,
        registrationToken: { value: 'one-time-token' },
        logLevel: 'debug',
      },
      image: { repository: 'registry.example.com/mirror/periscope-agent', tag: '0.1.0-rc.1' },
      impersonation: { extraGroups: ['periscope:sre'] },
      clusterShell: {
        enabled: true,
        namespace: 'periscope-shells',
        tiers: ['read', 'triage', 'write', 'maintain', 'admin'],
        networkPolicy: SHELL_EGRESS,
      },
      clusterRBAC: { enabled: true, adminTier: { enabled: true } },
      protectedNamespaces: ['kube-system', 'cert-manager'],
    },
  },
  {
    name: 'agent-rbac-only',
    chart: 'periscope-agent',
    about: 'rbac-only: no agent, the shell and tier RBAC for a kubeconfig/eks server identity (a User)',
    values: {
      mode: 'rbac-only',
      provisioner: { subject: { kind: 'User', name: 'arn:aws:iam::123456789012:role/periscope-server' } },
      clusterShell: {
        enabled: true,
        namespace: 'periscope-shell',
        tiers: ['read', 'admin'],
        networkPolicy: SHELL_EGRESS,
      },
      clusterRBAC: { enabled: true, adminTier: { enabled: true } },
    },
  },
  {
    name: 'agent-rbac-only-service-account',
    chart: 'periscope-agent',
    about: 'rbac-only for a ServiceAccount of another cluster-local server, shell only, no egress policy',
    values: {
      mode: 'rbac-only',
      provisioner: { subject: { kind: 'ServiceAccount', name: 'periscope', namespace: 'ops' } },
      clusterShell: { enabled: true, networkPolicy: { enabled: false } },
    },
  },
];

const shellOn = (
  auth: Record<string, unknown>,
  shell: Record<string, unknown> = {},
): Record<string, unknown> => ({
  auth,
  clusterShell: { enabled: true, networkPolicy: SHELL_EGRESS, ...shell },
});

export const FAIL_CASES: FailCase[] = [
  // The admin tier's binding comes with the tier RBAC only.
  {
    chart: 'periscope',
    about: 'clusterRBAC.adminTier.enabled without clusterRBAC.enabled',
    values: { clusterRBAC: { adminTier: { enabled: true } } },
    message:
      /clusterRBAC\.adminTier\.enabled=true needs clusterRBAC\.enabled=true: .* Set clusterRBAC\.enabled=true as well/,
  },
  {
    chart: 'periscope-agent',
    about: 'clusterRBAC.adminTier.enabled without clusterRBAC.enabled',
    values: { agent: AGENT_REQUIRED, clusterRBAC: { adminTier: { enabled: true } } },
    message: /clusterRBAC\.adminTier\.enabled=true needs clusterRBAC\.enabled=true/,
  },
  // mode=rbac-only
  {
    chart: 'periscope-agent',
    about: 'rbac-only without a provisioner subject',
    values: { mode: 'rbac-only', clusterShell: { enabled: true, networkPolicy: SHELL_EGRESS } },
    message: /mode=rbac-only needs provisioner\.subject\.name: .*kubectl auth whoami/,
  },
  {
    chart: 'periscope-agent',
    about: 'rbac-only bound to a system group',
    values: {
      mode: 'rbac-only',
      provisioner: { subject: { kind: 'Group', name: 'system:authenticated' } },
      clusterShell: { enabled: true, networkPolicy: SHELL_EGRESS },
    },
    message: /provisioner\.subject\.name="system:authenticated" is a Kubernetes system group/,
  },
  {
    chart: 'periscope-agent',
    about: 'rbac-only with a quote in the subject name',
    values: {
      mode: 'rbac-only',
      provisioner: { subject: { kind: 'User', name: "x' || true" } },
      clusterShell: { enabled: true, networkPolicy: SHELL_EGRESS },
    },
    message: /may not hold quotes, backslashes or spaces/,
  },
  {
    chart: 'periscope-agent',
    about: 'rbac-only with nothing to install',
    values: { mode: 'rbac-only', provisioner: { subject: { kind: 'User', name: 'periscope-server' } } },
    message: /installs nothing but the impersonator role\. Set clusterShell\.enabled=true/,
  },
  {
    chart: 'periscope-agent',
    about: 'a provisioner subject in agent mode',
    values: { agent: AGENT_REQUIRED, provisioner: { subject: { name: 'periscope-server' } } },
    message: /provisioner\.subject is for mode=rbac-only/,
  },
  // The four the issue names, in both charts where they apply.
  {
    chart: 'periscope',
    about: 'cluster shell with authorization mode shared',
    values: shellOn({ authorization: { mode: 'shared' } }),
    message:
      /clusterShell\.enabled=true requires auth\.authorization\.mode=tier \(got shared\)\. Set auth\.authorization\.mode: tier and map groups under auth\.authorization\.groupTiers, or set clusterShell\.enabled=false\./,
  },
  {
    chart: 'periscope',
    about: 'cluster shell with authorization mode raw',
    values: shellOn({ authorization: { mode: 'raw' } }),
    message: /requires auth\.authorization\.mode=tier \(got raw\)/,
  },
  {
    chart: 'periscope',
    about: 'an unknown tier name',
    values: shellOn(TIER_AUTH, { tiers: ['admin', 'root'] }),
    message:
      /clusterShell\.tiers\[1\]: unknown tier "root"\. Tiers are read, triage, write, maintain, admin; change clusterShell\.tiers\[1\] to one of them\./,
  },
  {
    chart: 'periscope-agent',
    about: 'an unknown tier name',
    values: { agent: AGENT_REQUIRED, clusterShell: { enabled: true, tiers: ['Admin'] } },
    message: /clusterShell\.tiers\[0\]: unknown tier "Admin"/,
  },
  {
    chart: 'periscope',
    about: 'an empty tier list',
    values: shellOn(TIER_AUTH, { tiers: [] }),
    message:
      /clusterShell\.tiers is empty\. List the tiers that may open a cluster shell, e\.g\. clusterShell\.tiers: \[admin\]/,
  },
  {
    chart: 'periscope-agent',
    about: 'an empty tier list',
    values: { agent: AGENT_REQUIRED, clusterShell: { enabled: true, tiers: [] } },
    message: /clusterShell\.tiers is empty/,
  },
  {
    chart: 'periscope',
    about: 'a namespace that is not a DNS label (upper case)',
    values: shellOn(TIER_AUTH, { namespace: 'Periscope-System' }),
    message:
      /clusterShell\.namespace="Periscope-System" is not a DNS label\. Use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit \(e\.g\. clusterShell\.namespace: periscope-system\)\./,
  },
  {
    chart: 'periscope',
    about: 'a namespace that is not a DNS label (64 characters)',
    values: shellOn(TIER_AUTH, { namespace: 'a'.repeat(64) }),
    message: /clusterShell\.namespace="a{64}" is not a DNS label/,
  },
  {
    chart: 'periscope-agent',
    about: 'a namespace that is not a DNS label (dots)',
    values: { agent: AGENT_REQUIRED, clusterShell: { enabled: true, namespace: 'periscope.system' } },
    message: /clusterShell\.namespace="periscope\.system" is not a DNS label/,
  },
  // Further rules of the server chart.
  {
    chart: 'periscope',
    about: 'a tier listed twice',
    values: shellOn(TIER_AUTH, { tiers: ['admin', 'admin'] }),
    message: /clusterShell\.tiers lists a tier twice \(admin, admin\)\. List each tier once\./,
  },
  {
    chart: 'periscope',
    about: 'an IdP group mapped to an unknown tier',
    values: { auth: { authorization: { mode: 'tier', groupTiers: { ops: 'superuser' } } } },
    message: /auth\.authorization\.groupTiers\["ops"\]: unknown tier "superuser"/,
  },
  {
    chart: 'periscope',
    about: 'an unknown default tier',
    values: { auth: { authorization: { mode: 'tier', defaultTier: 'viewer' } } },
    message: /auth\.authorization\.defaultTier: unknown tier "viewer"/,
  },
  {
    chart: 'periscope',
    about: 'a group mapped to admin while the admin tier binding is off',
    values: { auth: TIER_AUTH, clusterRBAC: { enabled: true } },
    message:
      /maps "platform-admins" to the admin tier, but clusterRBAC\.adminTier\.enabled=false.*Set clusterRBAC\.adminTier\.enabled=true/,
  },
  {
    chart: 'periscope',
    about: 'the OIDC client secret inside the auth block (would land in a ConfigMap)',
    values: { auth: { ...OIDC_SHARED, oidc: { ...OIDC.oidc, clientSecret: 'oops' } } },
    message: /auth\.oidc\.clientSecret would be stored in a ConfigMap\. Remove it and set oidcClientSecret/,
  },
  {
    chart: 'periscope',
    about: 'an auth.dev block',
    values: { auth: { dev: { users: [{ subject: 'admin' }] } } },
    message: /auth\.dev is not supported by the chart/,
  },
  {
    chart: 'periscope',
    about: 'both an existing and an inline OIDC client secret',
    values: { oidcClientSecret: { existingSecret: 'a', value: 'b' } },
    message: /Set only one of oidcClientSecret\.existingSecret and oidcClientSecret\.value/,
  },
  {
    chart: 'periscope',
    about: 'an Ingress without a host',
    values: { ingress: { enabled: true } },
    message: /ingress\.enabled=true requires ingress\.host\. Set ingress\.host: periscope\.example\.com/,
  },
  {
    chart: 'periscope',
    about: 'Ingress TLS without a certificate Secret',
    values: { ingress: { enabled: true, host: 'p.example.com', tls: { enabled: true } } },
    message: /ingress\.tls\.enabled=true requires ingress\.tls\.secretName/,
  },
  {
    chart: 'periscope',
    about: 'an agent cluster without the tunnel address agents dial',
    values: { clusters: [{ name: 'edge-1', backend: 'agent' }] },
    message:
      /The agent tunnel is exposed \(agentTunnel\.enabled=true or a cluster with backend: agent\) but agentTunnel\.url is empty\. Set agentTunnel\.url to the https:\/\/ address agents dial/,
  },
  {
    chart: 'periscope',
    about: 'an agent CA that would live on an emptyDir',
    values: {
      clusters: [{ name: 'edge-1', backend: 'agent' }],
      agentTunnel: { url: 'https://t.example.com:8443' },
      persistence: { enabled: false },
    },
    message: /the agent CA would be lost on every restart.*Set agentTunnel\.caSecret: periscope-agent-ca/,
  },
  {
    chart: 'periscope',
    about: 'a cluster name that is not a DNS label',
    values: { clusters: [{ name: 'Prod_EU', backend: 'agent' }] },
    message: /clusters\[0\]\.name="Prod_EU" is not a DNS label.*\(e\.g\. clusters\[0\]\.name: prod-eu\)/,
  },
  {
    chart: 'periscope',
    about: 'a cluster listed twice',
    values: {
      clusters: [
        { name: 'edge', backend: 'agent' },
        { name: 'edge', backend: 'in-cluster' },
      ],
    },
    message: /clusters\[1\]\.name="edge" is listed twice/,
  },
  {
    chart: 'periscope',
    about: 'impersonating a system group',
    values: {
      clusters: [{ name: 'home', backend: 'in-cluster' }],
      impersonation: { extraGroups: ['system:masters'] },
    },
    message: /impersonation\.extraGroups\[0\]="system:masters" is a system group/,
  },
  {
    chart: 'periscope',
    about: 'more than ten replicas (schema)',
    values: { replicaCount: 11 },
    message: /at '\/replicaCount': maximum: got 11, want 10/,
  },
  {
    chart: 'periscope',
    about: 'two replicas without Redis, PostgreSQL and the keys',
    values: { replicaCount: 2 },
    message: new RegExp(
      [
        'replicaCount=2 needs values that are not set:',
        '  - ha\\.redis \\(PERISCOPE_REDIS_URL[^\\n]*',
        '  - ha\\.database \\(PERISCOPE_DATABASE_URL[^\\n]*',
        '  - ha\\.sessionKey \\(PERISCOPE_SESSION_KEY[^\\n]*',
        '  - ha\\.replicaSecret \\(PERISCOPE_REPLICA_SECRET[^\\n]*',
        '  - persistence\\.enabled=false \\(a ReadWriteOnce claim mounts on one node only[^\\n]*',
        'Create one Secret with every key[^\\n]*',
        '  kubectl -n periscope-system create secret generic periscope-ha \\\\',
        "    --from-literal=redis-url='rediss://[^\\n]*",
        "    --from-literal=database-url='postgres://[^\\n]*",
        '    --from-literal=session-key="\\$\\(openssl rand -base64 32\\)" \\\\',
        '    --from-literal=replica-secret="\\$\\(openssl rand -base64 48\\)"',
        'then set ha\\.existingSecret=periscope-ha [^\\n]*',
        'See docs/helm-charts\\.md, "Several replicas"\\.',
      ].join('\\n'),
    ),
  },
  {
    chart: 'periscope',
    about: 'Redis without the session key and the replica secret',
    values: { ha: { redis: { existingSecret: 'periscope-redis' } } },
    message:
      /ha\.redis is set, which needs values that are not set:\n {2}- ha\.sessionKey .*\n {2}- ha\.replicaSecret .*\nCreate one Secret/,
  },
  {
    chart: 'periscope',
    about: "two replicas whose agent CA would be one replica's",
    values: {
      replicaCount: 2,
      ha: { existingSecret: 'periscope-ha' },
      persistence: { enabled: false },
      clusters: [{ name: 'edge-1', backend: 'agent' }],
      agentTunnel: { url: 'https://t.example.com:8443' },
    },
    message:
      /replicaCount=2 needs values that are not set:\n {2}- agentTunnel\.caSecret \(e\.g\. periscope-agent-ca[^\n]*\nSee docs/,
  },
  {
    chart: 'periscope',
    about: 'a disruption budget that keeps every replica',
    values: {
      replicaCount: 2,
      ha: { existingSecret: 'periscope-ha' },
      persistence: { enabled: false },
      podDisruptionBudget: { minAvailable: 2 },
    },
    message:
      /podDisruptionBudget\.minAvailable=2 with replicaCount=2 lets no replica be evicted.*Set podDisruptionBudget\.minAvailable below replicaCount/,
  },
  {
    chart: 'periscope',
    about: 'an idle timeout below the server minimum (schema)',
    values: { clusterShell: { idleSeconds: 10 } },
    message: /at '\/clusterShell\/idleSeconds': minimum: got 10, want 60/,
  },
  {
    chart: 'periscope',
    about: 'an unknown shell mode (schema)',
    values: { clusterShell: { mode: 'zsh' } },
    message: /at '\/clusterShell\/mode': value must be one of 'bash', 'kubectl'/,
  },
  {
    chart: 'periscope',
    about: 'an unknown mode of a tier (schema)',
    values: { clusterShell: { modeByTier: { read: 'zsh' } } },
    message: /at '\/clusterShell\/modeByTier\/read': value must be one of 'bash', 'kubectl'/,
  },
  {
    chart: 'periscope',
    about: 'a misspelt top-level value (schema)',
    values: { clustershell: { enabled: true } },
    message: /additional properties 'clustershell' not allowed/,
  },
  // Safe defaults: who may sign in, and no Kubernetes system names.
  {
    chart: 'periscope',
    about: 'OIDC in shared mode without allowed groups',
    values: { auth: OIDC },
    message:
      /auth\.authorization\.mode=shared with an empty auth\.authorization\.allowedGroups lets every account of the OpenID provider act on every cluster as the server's own identity\. List the IdP groups allowed to sign in under auth\.authorization\.allowedGroups, or use auth\.authorization\.mode: tier, or set auth\.authorization\.allowAnyUser=true/,
  },
  {
    chart: 'periscope',
    about: 'an empty raw-mode group prefix',
    values: { auth: { ...OIDC, authorization: { mode: 'raw', groupPrefix: '' } } },
    message: /auth\.authorization\.groupPrefix="" would let an IdP group become a Kubernetes system group/,
  },
  {
    chart: 'periscope',
    about: 'a group prefix an IdP group could complete to system:',
    values: { auth: { ...OIDC, authorization: { mode: 'raw', groupPrefix: 'sys' } } },
    message:
      /groupPrefix="sys" would let an IdP group become a Kubernetes system group.*e\.g\. groupPrefix: "periscope:"/,
  },
  {
    chart: 'periscope',
    about: 'a group prefix that starts with system:',
    values: { auth: { ...OIDC, authorization: { mode: 'raw', groupPrefix: 'system:oidc:' } } },
    message: /groupPrefix="system:oidc:" would let an IdP group become/,
  },
  {
    chart: 'periscope',
    about: 'a system group allowed to sign in',
    values: { auth: { ...OIDC, authorization: { allowedGroups: ['ops', 'system:authenticated'] } } },
    message: /auth\.authorization\.allowedGroups\[1\]="system:authenticated" is a Kubernetes system group/,
  },
  {
    chart: 'periscope',
    about: 'a system group mapped to a tier',
    values: { auth: { ...OIDC, authorization: { mode: 'tier', groupTiers: { 'system:masters': 'read' } } } },
    message: /auth\.authorization\.groupTiers\["system:masters"\] maps a Kubernetes system group/,
  },
  // The shell egress policy cannot be rendered without the apiserver's addresses.
  {
    chart: 'periscope',
    about: 'the shell egress policy under helm template, without apiserver CIDRs',
    values: shellOn(TIER_AUTH, { networkPolicy: { apiserver: { cidrs: [] } } }),
    message:
      /clusterShell\.networkPolicy: the apiserver's addresses could not be looked up \(helm template, --dry-run=client, or no read access to EndpointSlices in namespace default\).*Set clusterShell\.networkPolicy\.apiserver\.cidrs.*kubectl get endpointslice -n default -l kubernetes\.io\/service-name=kubernetes.*Or set clusterShell\.networkPolicy\.enabled=false/,
  },
  {
    chart: 'periscope-agent',
    about: 'the shell egress policy under helm template, without apiserver CIDRs',
    values: { agent: AGENT_REQUIRED, clusterShell: { enabled: true } },
    message: /clusterShell\.networkPolicy: the apiserver's addresses could not be looked up/,
  },
  {
    chart: 'periscope-agent',
    about: 'apiserver CIDRs that are not CIDRs (schema)',
    values: {
      agent: AGENT_REQUIRED,
      clusterShell: { enabled: true, networkPolicy: { apiserver: { cidrs: ['kubernetes.default'] } } },
    },
    message: /at '\/clusterShell\/networkPolicy\/apiserver\/cidrs\/0'/,
  },
  {
    chart: 'periscope-agent',
    about: 'no apiserver ports',
    values: {
      agent: AGENT_REQUIRED,
      clusterShell: { enabled: true, networkPolicy: { apiserver: { cidrs: ['10.0.0.1/32'], ports: [] } } },
    },
    message: /clusterShell\.networkPolicy\.apiserver\.ports is empty\. List the apiserver ports/,
  },
  // Agent chart.
  {
    chart: 'periscope-agent',
    about: 'no server URL',
    values: { agent: { clusterName: 'edge-1' } },
    message: /agent\.serverURL is required: the server's agent tunnel address/,
  },
  {
    chart: 'periscope-agent',
    about: 'a server URL that is not https',
    values: { agent: { ...AGENT_REQUIRED, serverURL: 'periscope.example.com:8443' } },
    message: /agent\.serverURL="periscope\.example\.com:8443" must be an https:\/\/ \(or wss:\/\/\) URL/,
  },
  {
    chart: 'periscope-agent',
    about: 'no cluster name',
    values: { agent: { serverURL: AGENT_REQUIRED.serverURL } },
    message: /agent\.clusterName is required: this cluster's name exactly as in the server's clusters list/,
  },
  {
    chart: 'periscope-agent',
    about: 'a cluster name that is not a DNS label',
    values: { agent: { ...AGENT_REQUIRED, clusterName: 'Edge 1' } },
    message: /agent\.clusterName="Edge 1" is not a DNS label/,
  },
  {
    chart: 'periscope-agent',
    about: 'a malformed CA pin',
    values: { agent: { ...AGENT_REQUIRED, serverCAHash: 'sha256:XYZ' } },
    message: /agent\.serverCAHash="sha256:XYZ" must be sha256:<64 lowercase hex digits>/,
  },
  {
    chart: 'periscope-agent',
    about: 'both an existing and an inline registration token',
    values: { agent: { ...AGENT_REQUIRED, registrationToken: { existingSecret: 'a', value: 'b' } } },
    message: /Set only one of agent\.registrationToken\.existingSecret and agent\.registrationToken\.value/,
  },
  {
    chart: 'periscope-agent',
    about: 'an existing ServiceAccount without a name',
    values: { agent: AGENT_REQUIRED, serviceAccount: { create: false } },
    message: /serviceAccount\.name is required when serviceAccount\.create=false/,
  },
  {
    chart: 'periscope-agent',
    about: 'a protected namespace that is not a DNS label',
    values: { agent: AGENT_REQUIRED, protectedNamespaces: ['kube-system', 'Cert_Manager'] },
    message: /protectedNamespaces\[1\]="Cert_Manager" is not a DNS label/,
  },
  {
    chart: 'periscope',
    about: 'a protected namespace that is not a DNS label',
    values: { protectedNamespaces: ['-vault'] },
    message: /protectedNamespaces\[0\]="-vault" is not a DNS label/,
  },
];
