import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';

import {
  buildSessionClusterRole,
  buildSessionClusterRoleBinding,
  buildSessionKubeconfig,
  buildSessionServiceAccount,
  buildShellPod,
  sessionIdentityProblem,
  shellObjectName,
} from './shell-objects';

const SID = '0190f0f0-aaaa-7bbb-8ccc-000000000001';

describe('shell objects', () => {
  it('derives names only from UUID session ids', () => {
    expect(shellObjectName(SID)).toBe(`periscope-shell-${SID}`);
    expect(() => shellObjectName('../../etc')).toThrow(/UUID/);
  });

  it('builds a kubeconfig that impersonates the operator narrowed to one tier', () => {
    const kc = parse(
      buildSessionKubeconfig({
        server: 'https://10.0.0.1:443',
        caPem: 'CA',
        token: 't0k',
        subject: 'alice',
        tier: 'admin',
        sessionId: SID,
      }),
    ) as {
      users: { user: Record<string, unknown> }[];
      clusters: { cluster: Record<string, string> }[];
    };
    expect(kc.users[0]!.user).toEqual({
      token: 't0k',
      as: 'alice',
      'as-groups': ['periscope-tier:admin'],
      'as-user-extra': { 'audit.periscope.io/session-id': [SID], 'audit.periscope.io/actor': ['alice'] },
    });
    expect(Buffer.from(kc.clusters[0]!.cluster['certificate-authority-data']!, 'base64').toString()).toBe(
      'CA',
    );
  });

  it('builds a pod that passes Pod Security "restricted" and mounts only the session Secret', () => {
    const pod = buildShellPod({
      sessionId: SID,
      namespace: 'periscope-system',
      tier: 'admin',
      image: 'img:1',
      imagePullPolicy: 'IfNotPresent',
      mode: 'bash',
      nodeSelector: { pool: 'ops' },
      extraLabels: { team: 'sre' },
    });
    const spec = pod.spec!;
    const c = spec.containers[0]!;
    expect(pod.metadata?.labels).toEqual({
      team: 'sre',
      'app.kubernetes.io/name': 'periscope-shell',
      'periscope.io/session-id': SID,
      'periscope.io/tier': 'admin',
      'periscope.io/cluster-shell': 'true',
    });
    expect(spec.serviceAccountName).toBe(`periscope-shell-${SID}`);
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(spec.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(c.volumeMounts).toContainEqual({ name: 'session', mountPath: '/etc/periscope', readOnly: true });
    expect(Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]))).toMatchObject({
      PERISCOPE_SHELL_SESSION_ID: SID,
      PERISCOPE_SHELL_MODE: 'bash',
      PERISCOPE_SHELL_NAMESPACE: 'periscope-system',
      KUBECONFIG: '/etc/periscope/kubeconfig',
      KUBE_EDITOR: 'nano',
    });
    expect(spec.nodeSelector).toEqual({ pool: 'ops' });
    expect(c.resources?.limits).toBeDefined();
  });

  it("applies the operator's pod template; Periscope's own labels and the security context stay", () => {
    const pod = buildShellPod({
      sessionId: SID,
      namespace: 'periscope-system',
      tier: 'read',
      image: 'img:1',
      imagePullPolicy: 'IfNotPresent',
      mode: 'bash',
      resources: { requests: { cpu: '100m' }, limits: { cpu: '2', memory: '1Gi' } },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'ops', effect: 'NoSchedule' }],
      priorityClassName: 'ops-high',
      extraLabels: { 'periscope.io/tier': 'admin', team: 'sre' },
      annotations: { 'example.com/owner': 'sre' },
      imagePullSecrets: ['regcred'],
    });
    expect(pod.metadata?.labels).toMatchObject({ team: 'sre', 'periscope.io/tier': 'read' });
    expect(pod.metadata?.annotations).toEqual({ 'example.com/owner': 'sre' });
    expect(pod.spec?.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(pod.spec?.tolerations).toEqual([
      { key: 'dedicated', operator: 'Equal', value: 'ops', effect: 'NoSchedule' },
    ]);
    expect(pod.spec?.priorityClassName).toBe('ops-high');
    expect(pod.spec?.containers[0]?.resources).toEqual({
      requests: { cpu: '100m' },
      limits: { cpu: '2', memory: '1Gi' },
    });
    expect(pod.spec?.containers[0]?.securityContext?.capabilities).toEqual({ drop: ['ALL'] });
    const plain = buildShellPod({
      sessionId: SID,
      namespace: 'periscope-system',
      tier: 'read',
      image: 'img:1',
      imagePullPolicy: 'IfNotPresent',
      mode: 'bash',
      annotations: {},
      imagePullSecrets: [],
    });
    expect(plain.metadata).not.toHaveProperty('annotations');
    expect(plain.spec).not.toHaveProperty('imagePullSecrets');
  });

  const identity = { sessionId: SID, namespace: 'shells', tier: 'triage', subject: 'alice@example.com' };
  const labels = {
    'app.kubernetes.io/name': 'periscope-shell',
    'periscope.io/session-id': SID,
    'periscope.io/tier': 'triage',
    'periscope.io/cluster-shell': 'true',
  };

  it('builds a per-session ServiceAccount without an automounted token', () => {
    expect(buildSessionServiceAccount(identity)).toEqual({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: `periscope-shell-${SID}`, namespace: 'shells', labels },
      automountServiceAccountToken: false,
    });
  });

  it('builds a ClusterRole that may impersonate only this operator, tier group, session id and actor', () => {
    const role = buildSessionClusterRole(identity);
    expect(role.metadata).toEqual({
      name: `periscope-shell-${SID}`,
      labels: { ...labels, 'periscope.io/shell-namespace': 'shells' },
    });
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['users'], verbs: ['impersonate'], resourceNames: ['alice@example.com'] },
      {
        apiGroups: [''],
        resources: ['groups'],
        verbs: ['impersonate'],
        resourceNames: ['periscope-tier:triage'],
      },
      {
        apiGroups: ['authentication.k8s.io'],
        resources: ['userextras/audit.periscope.io/session-id'],
        verbs: ['impersonate'],
        resourceNames: [SID],
      },
      {
        apiGroups: ['authentication.k8s.io'],
        resources: ['userextras/audit.periscope.io/actor'],
        verbs: ['impersonate'],
        resourceNames: ['alice@example.com'],
      },
    ]);
  });

  it('binds that role to that ServiceAccount only', () => {
    const binding = buildSessionClusterRoleBinding(identity);
    expect(binding.metadata?.labels?.['periscope.io/shell-namespace']).toBe('shells');
    expect(binding.roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: `periscope-shell-${SID}`,
    });
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: `periscope-shell-${SID}`, namespace: 'shells' },
    ]);
  });

  it.each([
    ['system:admin', 'admin', /starts with "system:"/],
    ['System:kube-controller-manager', 'read', /starts with "system:"/],
    ['', 'read', /empty/],
    [' alice', 'read', /surrounding spaces/],
    ['alice', 'admin,system:masters', /not a plain name/],
    ['alice', 'x:y', /not a plain name/],
    ['alice', '', /not a plain name/],
  ])('refuses an identity for subject %j in tier %j', (subject, tier, why) => {
    expect(sessionIdentityProblem(subject, tier)).toMatch(why);
    expect(() => buildSessionClusterRole({ ...identity, subject, tier })).toThrow(why);
  });

  it('accepts ordinary subjects', () => {
    for (const subject of ['alice@example.com', '00u1abcd', 'CN=alice,O=example', 'systemd-user'])
      expect(sessionIdentityProblem(subject, 'read')).toBeUndefined();
  });
});
