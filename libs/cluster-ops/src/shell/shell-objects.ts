import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Pod,
  V1ServiceAccount,
  V1Toleration,
} from '@kubernetes/client-node';
import { stringify } from 'yaml';

export const SHELL_LABELS = {
  name: 'app.kubernetes.io/name',
  sessionId: 'periscope.io/session-id',
  tier: 'periscope.io/tier',
  clusterShell: 'periscope.io/cluster-shell',
  /** on cluster-scoped shell objects: the shell namespace whose reaper owns them */
  shellNamespace: 'periscope.io/shell-namespace',
} as const;

export const AUDIT_EXTRA = {
  sessionId: 'audit.periscope.io/session-id',
  actor: 'audit.periscope.io/actor',
} as const;

export const SHELL_PATHS = {
  secretMount: '/etc/periscope',
  kubeconfig: '/etc/periscope/kubeconfig',
  auditFile: '/tmp/periscope-shell/audit.jsonl',
} as const;

const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isSessionId(value: string): boolean {
  return SESSION_ID.test(value);
}

/** Session ids are UUIDs; object names derive from them. */
export function shellObjectName(sessionId: string): string {
  if (!SESSION_ID.test(sessionId)) throw new Error(`session id must be a lowercase UUID: ${sessionId}`);
  return `periscope-shell-${sessionId}`;
}

export const TIER_GROUP_PREFIX = 'periscope-tier:';
const TIER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * Why no per-session identity may be built for this operator and tier, or undefined when it may.
 * A `system:` subject is one of Kubernetes' own identities (nodes, controllers, service accounts);
 * the tier group must be one of Periscope's, never a group such as system:masters.
 */
export function sessionIdentityProblem(subject: string, tier: string): string | undefined {
  if (subject.trim() === '' || subject !== subject.trim())
    return 'the operator subject is empty or has surrounding spaces';
  if (subject.toLowerCase().startsWith('system:'))
    return `the operator subject "${subject}" starts with "system:", which names Kubernetes' own identities; map the person to their IdP subject (the OIDC "sub" claim) instead`;
  if (!TIER_NAME.test(tier))
    return `the tier "${tier}" is not a plain name, so its group would not be a "${TIER_GROUP_PREFIX}<tier>" group; use one of read, triage, write, maintain, admin`;
  return undefined;
}

export function shellLabels(
  sessionId: string,
  tier: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ...extra,
    [SHELL_LABELS.name]: 'periscope-shell',
    [SHELL_LABELS.sessionId]: sessionId,
    [SHELL_LABELS.tier]: tier,
    [SHELL_LABELS.clusterShell]: 'true',
  };
}

export interface SessionIdentityInput {
  sessionId: string;
  namespace: string;
  tier: string;
  subject: string;
  extraLabels?: Record<string, string>;
}

/** The per-session ServiceAccount: the shell pod runs as it and its token is minted for it. */
export function buildSessionServiceAccount(i: SessionIdentityInput): V1ServiceAccount {
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: {
      name: shellObjectName(i.sessionId),
      namespace: i.namespace,
      labels: shellLabels(i.sessionId, i.tier, i.extraLabels),
    },
    automountServiceAccountToken: false,
  };
}

const clusterScopedLabels = (i: SessionIdentityInput): Record<string, string> => ({
  ...shellLabels(i.sessionId, i.tier, i.extraLabels),
  [SHELL_LABELS.shellNamespace]: i.namespace,
});

/**
 * The per-session ClusterRole: impersonate this one operator, this one tier group and these two
 * extra values, nothing else. The charts' admission policy refuses any other shape.
 */
export function buildSessionClusterRole(i: SessionIdentityInput): V1ClusterRole {
  const problem = sessionIdentityProblem(i.subject, i.tier);
  if (problem !== undefined) throw new Error(problem);
  const impersonate = (apiGroup: string, resource: string, name: string) => ({
    apiGroups: [apiGroup],
    resources: [resource],
    verbs: ['impersonate'],
    resourceNames: [name],
  });
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: shellObjectName(i.sessionId), labels: clusterScopedLabels(i) },
    rules: [
      impersonate('', 'users', i.subject),
      impersonate('', 'groups', `${TIER_GROUP_PREFIX}${i.tier}`),
      impersonate('authentication.k8s.io', `userextras/${AUDIT_EXTRA.sessionId}`, i.sessionId),
      impersonate('authentication.k8s.io', `userextras/${AUDIT_EXTRA.actor}`, i.subject),
    ],
  };
}

/** Binds the session's ClusterRole to the session's ServiceAccount, and to nothing else. */
export function buildSessionClusterRoleBinding(i: SessionIdentityInput): V1ClusterRoleBinding {
  const name = shellObjectName(i.sessionId);
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name, labels: clusterScopedLabels(i) },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
    subjects: [{ kind: 'ServiceAccount', name, namespace: i.namespace }],
  };
}

export interface SessionKubeconfigInput {
  server: string;
  caPem: string;
  token: string;
  subject: string;
  tier: string;
  sessionId: string;
}

/** The kubeconfig mounted into the shell pod: session SA token plus impersonation of the operator. */
export function buildSessionKubeconfig(i: SessionKubeconfigInput): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'cluster',
        cluster: { server: i.server, 'certificate-authority-data': Buffer.from(i.caPem).toString('base64') },
      },
    ],
    users: [
      {
        name: 'operator',
        user: {
          token: i.token,
          as: i.subject,
          'as-groups': [`${TIER_GROUP_PREFIX}${i.tier}`],
          'as-user-extra': { [AUDIT_EXTRA.sessionId]: [i.sessionId], [AUDIT_EXTRA.actor]: [i.subject] },
        },
      },
    ],
    contexts: [{ name: 'periscope', context: { cluster: 'cluster', user: 'operator' } }],
    'current-context': 'periscope',
  });
}

export interface ShellPodInput {
  sessionId: string;
  namespace: string;
  tier: string;
  image: string;
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  mode: string;
  runAsUser?: number;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  nodeSelector?: Record<string, string>;
  tolerations?: V1Toleration[];
  priorityClassName?: string;
  extraLabels?: Record<string, string>;
  /** extra annotations of the pod (the server refuses periscope.io/ and AppArmor/seccomp keys) */
  annotations?: Record<string, string>;
  /** names of image pull Secrets in the shell namespace */
  imagePullSecrets?: string[];
}

const DEFAULT_RESOURCES = { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '1', memory: '512Mi' } };

/**
 * The session pod exactly as the design says: runs as the session's own ServiceAccount,
 * restricted Pod Security, Secret read-only, no SA token mounted.
 */
export function buildShellPod(i: ShellPodInput): V1Pod {
  const name = shellObjectName(i.sessionId);
  const uid = i.runAsUser ?? 1000;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: i.namespace,
      labels: shellLabels(i.sessionId, i.tier, i.extraLabels),
      ...(i.annotations && Object.keys(i.annotations).length > 0
        ? { annotations: { ...i.annotations } }
        : {}),
    },
    spec: {
      serviceAccountName: name,
      automountServiceAccountToken: false,
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 5,
      enableServiceLinks: false,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: uid,
        runAsGroup: uid,
        fsGroup: uid,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      ...(i.nodeSelector ? { nodeSelector: i.nodeSelector } : {}),
      ...(i.tolerations ? { tolerations: i.tolerations } : {}),
      ...(i.priorityClassName !== undefined ? { priorityClassName: i.priorityClassName } : {}),
      ...(i.imagePullSecrets && i.imagePullSecrets.length > 0
        ? { imagePullSecrets: i.imagePullSecrets.map((n) => ({ name: n })) }
        : {}),
      containers: [
        {
          name: 'shell',
          image: i.image,
          imagePullPolicy: i.imagePullPolicy,
          command: ['periscope-shell', 'hold'],
          env: [
            { name: 'PERISCOPE_SHELL_SESSION_ID', value: i.sessionId },
            { name: 'PERISCOPE_SHELL_MODE', value: i.mode },
            // kubectl mode refuses exec/debug/port-forward into the session namespace
            { name: 'PERISCOPE_SHELL_NAMESPACE', value: i.namespace },
            { name: 'PERISCOPE_SHELL_AUDIT_FILE', value: SHELL_PATHS.auditFile },
            { name: 'KUBECONFIG', value: SHELL_PATHS.kubeconfig },
            { name: 'KUBE_EDITOR', value: 'nano' },
            { name: 'HOME', value: '/tmp' },
          ],
          volumeMounts: [
            { name: 'session', mountPath: SHELL_PATHS.secretMount, readOnly: true },
            { name: 'tmp', mountPath: '/tmp' },
          ],
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            runAsNonRoot: true,
            capabilities: { drop: ['ALL'] },
          },
          resources: i.resources ?? DEFAULT_RESOURCES,
          stdin: false,
          tty: false,
        },
      ],
      volumes: [
        { name: 'session', secret: { secretName: name, defaultMode: 0o400 } },
        { name: 'tmp', emptyDir: { sizeLimit: '64Mi' } },
      ],
    },
  };
}
