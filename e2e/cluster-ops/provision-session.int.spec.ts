import { randomUUID } from 'node:crypto';

import type * as k8s from '@kubernetes/client-node';
import {
  discoverClusterCa,
  shellObjectName,
  ShellProvisioner,
  type ProvisionInput,
} from '@periscope/cluster-ops';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import type { TestCluster } from '../k8s/cluster';
import { SHELL_NS, startShellCluster } from './shell-cluster';

const ns = SHELL_NS;

describe('a provisioned cluster-shell session on a real apiserver', () => {
  let env: Awaited<ReturnType<typeof startShellCluster>>;
  let cluster: TestCluster;
  let provisioner: ShellProvisioner;
  let base: Omit<ProvisionInput, 'sessionId'>;

  beforeAll(async () => {
    env = await startShellCluster(inject('cluster').binDir);
    cluster = env.cluster;
    provisioner = new ShellProvisioner(env.provisionerKc);
    const { caPem, server, source } = await discoverClusterCa(env.provisionerKc, { preferClusterInfo: true });
    expect(source).toBe('cluster-info');
    base = {
      namespace: ns,
      tier: 'admin',
      image: env.image,
      imagePullPolicy: 'IfNotPresent',
      mode: 'bash',
      subject: 'alice@example.com',
      server,
      caPem,
      tokenSeconds: 3600,
      podStartTimeoutMs: 30_000,
    };
  });

  afterAll(async () => {
    await env.stop();
  });

  it('creates the Secret and Pod, runs kubectl as the operator in that tier, audits the session id, and tears down completely', async () => {
    const sessionId = randomUUID();
    const name = shellObjectName(sessionId);
    const phases: string[] = [];
    await provisioner.provision({ ...base, sessionId }, (p) => phases.push(p));
    expect(phases).toEqual(
      expect.arrayContaining(['secret', 'identity', 'token', 'kubeconfig', 'pod', 'ready']),
    );

    const pod = JSON.parse(
      await cluster.kubectlOk(['-n', ns, 'get', 'pod', name, '-o', 'json']),
    ) as k8s.V1Pod;
    expect(pod.spec?.serviceAccountName).toBe(name); // the session's own ServiceAccount
    expect(pod.spec?.automountServiceAccountToken).toBe(false);
    expect(pod.metadata?.labels?.['periscope.io/session-id']).toBe(sessionId);
    const secret = JSON.parse(
      await cluster.kubectlOk(['-n', ns, 'get', 'secret', name, '-o', 'json']),
    ) as k8s.V1Secret;
    expect(Object.keys(secret.data ?? {})).toEqual(['kubeconfig']);
    const token = /token: (\S+)/.exec(Buffer.from(secret.data!['kubeconfig']!, 'base64').toString())?.[1];
    expect(token).toBeDefined();

    // Inside the pod, kubectl (through the audit wrapper) runs as the operator, narrowed to the tier.
    const whoami = JSON.parse(
      await cluster.kubectlOk([
        '-n',
        ns,
        'exec',
        name,
        '-c',
        'shell',
        '--',
        'kubectl',
        'auth',
        'whoami',
        '-o',
        'json',
      ]),
    ) as {
      status: { userInfo: { username: string; groups: string[]; extra: Record<string, string[]> } };
    };
    expect(whoami.status.userInfo.username).toBe('alice@example.com');
    expect(whoami.status.userInfo.groups).toContain('periscope-tier:admin');
    expect(whoami.status.userInfo.extra).toMatchObject({
      'audit.periscope.io/session-id': [sessionId],
      'audit.periscope.io/actor': ['alice@example.com'],
    });
    const list = await cluster.kubectl([
      '-n',
      ns,
      'exec',
      name,
      '-c',
      'shell',
      '--',
      'kubectl',
      'get',
      'pods',
      '-n',
      ns,
      '-o',
      'name',
    ]);
    expect(list.stdout).toContain(`pod/${name}`);
    await cluster.waitFor('the session id in the apiserver audit log', () =>
      Promise.resolve(
        cluster
          .auditEvents()
          .some((e) => e.impersonatedUser?.extra?.['audit.periscope.io/session-id']?.[0] === sessionId),
      ),
    );

    await provisioner.teardown(ns, sessionId);
    await provisioner.teardown(ns, sessionId); // harmless twice
    await cluster.waitFor(
      'the session objects to be gone',
      async () =>
        (
          await cluster.kubectlOk([
            '-n',
            ns,
            'get',
            'pods,secrets,serviceaccounts,clusterroles,clusterrolebindings',
            '-l',
            `periscope.io/session-id=${sessionId}`,
            '-o',
            'name',
          ])
        ).trim() === '',
    );
    const anonymous = cluster.kubeconfig('no-creds', {});
    await cluster.waitFor(
      'the session token to be rejected',
      async () =>
        (await cluster.kubectl(['auth', 'whoami', '--token', token!], { kubeconfig: anonymous })).code !== 0,
      20_000,
    );
  });

  it('reaps leftovers but never a live session', async () => {
    const live = randomUUID();
    await provisioner.provision({ ...base, sessionId: live });
    const orphan = randomUUID();
    await cluster.apply(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: shellObjectName(orphan),
          namespace: ns,
          labels: { 'periscope.io/cluster-shell': 'true', 'periscope.io/session-id': orphan },
        },
      }),
    );
    const removed = await provisioner.reap(ns, (sid) => sid === live, 0);
    expect(removed).toEqual([orphan]);
    expect((await cluster.kubectl(['-n', ns, 'get', 'pod', shellObjectName(live)])).code).toBe(0);
    expect((await cluster.kubectl(['-n', ns, 'get', 'secret', shellObjectName(orphan)])).code).not.toBe(0);
    expect(await provisioner.reap(ns, () => false, 60 * 60_000)).toEqual([]); // within the grace period
    await provisioner.teardown(ns, live);
  });

  it('still provisions when the provisioner may not watch pods: it falls back to reading them', async () => {
    const role = (verbs: string[]): string =>
      JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: 'periscope-shell-provisioner', namespace: ns },
        rules: [
          { apiGroups: [''], resources: ['pods', 'secrets'], verbs },
          { apiGroups: [''], resources: ['pods/exec'], verbs: ['get', 'create'] },
          {
            apiGroups: [''],
            resources: ['serviceaccounts'],
            verbs: ['create', 'delete', 'get', 'list', 'watch'],
          },
          { apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] },
          { apiGroups: [''], resources: ['events'], verbs: ['get', 'list', 'watch'] },
        ],
      });
    const canWatch = async (): Promise<string> =>
      (
        await cluster.kubectl([
          'auth',
          'can-i',
          'watch',
          'pods',
          '-n',
          ns,
          `--as=system:serviceaccount:${ns}:provisioner`,
        ])
      ).stdout.trim();
    await cluster.apply(role(['get', 'list', 'create', 'update', 'patch', 'delete']));
    try {
      for (let i = 0; i < 50 && (await canWatch()) !== 'no'; i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(await canWatch()).toBe('no');
      const sessionId = randomUUID();
      const phases: string[] = [];
      await provisioner.provision({ ...base, sessionId }, (p) => phases.push(p));
      expect(phases.at(-1)).toBe('ready');
      const pod = JSON.parse(
        await cluster.kubectlOk(['-n', ns, 'get', 'pod', shellObjectName(sessionId), '-o', 'json']),
      ) as k8s.V1Pod;
      expect(pod.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
      // it did try to watch, was refused, and read instead
      const refused = cluster
        .auditEvents()
        .filter(
          (e) =>
            e.verb === 'watch' &&
            e.user.username === `system:serviceaccount:${ns}:provisioner` &&
            e.requestURI.includes(`metadata.name%3D${shellObjectName(sessionId)}`),
        );
      expect(refused.length).toBeGreaterThan(0);
      expect(refused.every((e) => e.responseStatus?.code === 403)).toBe(true);
      await provisioner.teardown(ns, sessionId);
    } finally {
      await cluster.apply(role(['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']));
    }
  });
});
