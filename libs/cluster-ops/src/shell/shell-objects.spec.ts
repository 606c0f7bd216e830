import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';

import { buildSessionKubeconfig, buildShellPod, shellObjectName } from './shell-objects';

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
    expect(spec.serviceAccountName).toBe('periscope-shell-admin');
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
      KUBECONFIG: '/etc/periscope/kubeconfig',
      KUBE_EDITOR: 'nano',
    });
    expect(spec.nodeSelector).toEqual({ pool: 'ops' });
    expect(c.resources?.limits).toBeDefined();
  });
});
