import type { V1Pod, V1Toleration } from '@kubernetes/client-node';
import { stringify } from 'yaml';

export const SHELL_LABELS = {
  name: 'app.kubernetes.io/name',
  sessionId: 'periscope.io/session-id',
  tier: 'periscope.io/tier',
  clusterShell: 'periscope.io/cluster-shell',
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

/** Session ids are UUIDs; object names derive from them. */
export function shellObjectName(sessionId: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(sessionId))
    throw new Error(`session id must be a lowercase UUID: ${sessionId}`);
  return `periscope-shell-${sessionId}`;
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

export interface SessionKubeconfigInput {
  server: string;
  caPem: string;
  token: string;
  subject: string;
  tier: string;
  sessionId: string;
}

/** The kubeconfig mounted into the shell pod: SA token plus impersonation of the operator. */
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
          'as-groups': [`periscope-tier:${i.tier}`],
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
}

const DEFAULT_RESOURCES = { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '1', memory: '512Mi' } };

/** The session pod exactly as the design says: restricted Pod Security, Secret read-only, no SA token. */
export function buildShellPod(i: ShellPodInput): V1Pod {
  const name = shellObjectName(i.sessionId);
  const uid = i.runAsUser ?? 1000;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: i.namespace, labels: shellLabels(i.sessionId, i.tier, i.extraLabels) },
    spec: {
      serviceAccountName: `periscope-shell-${i.tier}`,
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
      containers: [
        {
          name: 'shell',
          image: i.image,
          imagePullPolicy: i.imagePullPolicy,
          command: ['periscope-shell', 'hold'],
          env: [
            { name: 'PERISCOPE_SHELL_SESSION_ID', value: i.sessionId },
            { name: 'PERISCOPE_SHELL_MODE', value: i.mode },
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
