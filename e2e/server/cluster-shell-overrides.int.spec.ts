import 'reflect-metadata';

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as k8s from '@kubernetes/client-node';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';

import { AuditStore } from '../../apps/server/src/audit/audit-store';
import { ShellAdmission } from '../../apps/server/src/cluster-shell/shell-admission.service';
import { loadServerConfig, type ServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import { SHELL_NS, startShellCluster } from '../cluster-ops/shell-cluster';
import { devLogin } from '../support/dev-login';
import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';

const ORIGIN = 'http://localhost:8080';
const PRIORITY_CLASS = 'periscope-shell-test';
const IN_CLUSTER_SERVER = 'https://kubernetes.default.svc:443';
/** Far below the clusters file's minimum (60 s), set on the loaded configuration to keep the test short. */
const TUNED_IDLE_SECONDS = 8;
const IDLE_WARN_SECONDS = 4;

/**
 * Per-cluster cluster-shell overrides through the real server against the local control plane,
 * with Pod Security `restricted` enforced on the shell namespace: one cluster has the shell off,
 * one gives the read tier kubectl mode, one has a pod template (toleration, resources,
 * annotations, pull secret, PriorityClass, labels), its own idle cut and cap, and an
 * inClusterServer. The pods the server creates carry exactly those fields.
 */
describe('cluster shell: per-cluster overrides, mode per tier, pod template, inClusterServer', () => {
  let env: Awaited<ReturnType<typeof startShellCluster>>;
  let server: NestExpressApplication;
  let base: string;
  let admin: string;
  let reader: string;
  let watch: { abort: () => void } | undefined;
  /** every session pod as first created, by session id */
  const pods = new Map<string, k8s.V1Pod>();

  beforeAll(async () => {
    env = await startShellCluster(inject('cluster').binDir, { tiers: ['read', 'admin'] });
    const { cluster } = env;
    await cluster.kubectlOk([
      'label',
      'namespace',
      SHELL_NS,
      'pod-security.kubernetes.io/enforce=restricted',
      'pod-security.kubernetes.io/enforce-version=latest',
    ]);
    await cluster.apply(
      JSON.stringify({
        apiVersion: 'scheduling.k8s.io/v1',
        kind: 'PriorityClass',
        metadata: { name: PRIORITY_CLASS },
        value: 1000,
        description: 'periscope shell test',
      }),
    );
    const adminKc = new k8s.KubeConfig();
    adminKc.loadFromFile(cluster.info.adminKubeconfig);
    watch = await new k8s.Watch(adminKc).watch(
      `/api/v1/namespaces/${SHELL_NS}/pods`,
      {},
      (type: string, obj: k8s.V1Pod) => {
        const sid = obj.metadata?.labels?.['periscope.io/session-id'];
        if (type === 'ADDED' && sid !== undefined && !pods.has(sid) && pods.size < 100) pods.set(sid, obj);
      },
      () => undefined,
    );

    const dir = mkdtempSync(join(tmpdir(), 'periscope-shell-overrides-'));
    const kubeconfig = join(dir, 'provisioner.kubeconfig');
    writeFileSync(kubeconfig, env.provisionerKc.exportConfig());
    writeFileSync(
      join(dir, 'auth.yaml'),
      [
        'authorization:',
        '  mode: tier',
        '  groupTiers: { admins: admin, readers: read }',
        'dev:',
        '  users:',
        '    - { subject: alice@example.com, groups: [admins] }',
        '    - { subject: rita@example.com, groups: [readers] }',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'clusters.yaml'),
      [
        'clusters:',
        `  - { name: off, backend: kubeconfig, kubeconfigPath: ${kubeconfig}, clusterShell: { enabled: false } }`,
        `  - { name: kube, backend: kubeconfig, kubeconfigPath: ${kubeconfig}, clusterShell: { modeByTier: { read: kubectl } } }`,
        '  - name: tuned',
        '    backend: kubeconfig',
        `    kubeconfigPath: ${kubeconfig}`,
        `    inClusterServer: ${IN_CLUSTER_SERVER}`,
        '    clusterShell:',
        '      maxSessionsTotal: 1',
        '      idleSeconds: 60',
        '      pod:',
        '        resources: { requests: { cpu: 20m, memory: 32Mi }, limits: { cpu: 500m, memory: 256Mi } }',
        '        tolerations: [{ key: periscope.test/dedicated, operator: Equal, value: shells, effect: NoSchedule }]',
        `        priorityClassName: ${PRIORITY_CLASS}`,
        '        labels: { team: sre }',
        '        annotations: { example.com/owner: "SRE team" }',
        '        imagePullSecrets: [regcred]',
        '',
      ].join('\n'),
    );
    const config: ServerConfig = loadServerConfig(
      {
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
        PERISCOPE_DATA_DIR: join(dir, 'data'),
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_CLUSTER_SHELL_TIERS: 'read,admin',
        PERISCOPE_CLUSTER_SHELL_NAMESPACE: SHELL_NS,
        PERISCOPE_CLUSTER_SHELL_IMAGE: env.image,
        PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '5',
        PERISCOPE_CLUSTER_SHELL_POD_LABELS: '{"fleet":"lab"}',
        PERISCOPE_PUBLIC_URL: ORIGIN,
        PERISCOPE_LOG_LEVEL: 'warn',
      },
      (p) => readFileSync(p, 'utf8'),
    );
    const tuned = config.clusters.find((c) => c.name === 'tuned');
    if (!tuned) throw new Error('no tuned cluster');
    tuned.clusterShell.idleSeconds = TUNED_IDLE_SECONDS;
    config.exec.idleWarnSeconds = IDLE_WARN_SECONDS;
    server = await createServerApp(config);
    await server.listen(0, '127.0.0.1');
    base = await server.getUrl();
    admin = await devLogin(base, 'alice@example.com');
    reader = await devLogin(base, 'rita@example.com');
  });

  afterAll(async () => {
    watch?.abort();
    await server.close();
    await env.stop();
  });

  const open = (cookie: string, cluster: string, body: Record<string, unknown> = {}) =>
    fetch(`${base}/api/clusters/${cluster}/shell/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie, origin: ORIGIN },
      body: JSON.stringify(body),
    });

  async function connect(
    cookie: string,
    cluster: string,
  ): Promise<{ sessionId: string; client: TerminalClient }> {
    const res = await open(cookie, cluster);
    expect(res.status).toBe(201);
    const { ticket, sessionId } = (await res.json()) as { ticket: string; sessionId: string };
    const client = new TerminalClient(
      `${base.replace('http', 'ws')}/api/clusters/${cluster}/shell?ticket=${ticket}`,
      {
        cookie,
        origin: ORIGIN,
      },
    );
    await client.opened;
    client.control({ type: 'resize', cols: 100, rows: 30 });
    return { sessionId, client };
  }

  const readyOf = (client: TerminalClient) =>
    until(
      'the session pod to be ready',
      () =>
        client.frames.some((f) => f['type'] === 'status' && f['phase'] === 'ready') ||
        client.frame('closed') !== undefined,
      60_000,
    );

  it('really enforces Pod Security restricted on the shell namespace', async () => {
    const r = await env.cluster.kubectl([
      '-n',
      SHELL_NS,
      'run',
      'plain',
      '--image=busybox',
      '--dry-run=server',
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/violates PodSecurity "restricted/);
  });

  it("shows each cluster's effective settings and why one has no shell", async () => {
    const list = async (cookie: string) =>
      (
        (await (await fetch(`${base}/api/clusters`, { headers: { cookie } })).json()) as {
          clusters: Record<string, unknown>[];
        }
      ).clusters;
    const asReader = Object.fromEntries((await list(reader)).map((c) => [c['name'], c]));
    expect(asReader['off']).toMatchObject({
      clusterShellEnabled: false,
      clusterShellReason:
        'the cluster shell is turned off for off (clusterShell.enabled: false in the clusters file)',
    });
    expect(asReader['kube']).toMatchObject({
      clusterShellEnabled: true,
      clusterShellMode: 'kubectl',
      clusterShell: { tiers: ['read', 'admin'], modeByTier: { read: 'kubectl', admin: 'bash' } },
    });
    expect(asReader['tuned']).toMatchObject({
      clusterShellEnabled: true,
      clusterShellMode: 'bash',
      clusterShell: { maxSessionsTotal: 1, idleSeconds: TUNED_IDLE_SECONDS, image: env.image },
    });
    const asAdmin = Object.fromEntries((await list(admin)).map((c) => [c['name'], c]));
    expect(asAdmin['kube']).toMatchObject({ clusterShellEnabled: true, clusterShellMode: 'bash' });
  });

  it('refuses the cluster that has the shell off with E_CLUSTER_SHELL_DISABLED and the reason', async () => {
    const res = await open(admin, 'off');
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({
      error: 'E_CLUSTER_SHELL_DISABLED',
      message:
        'the cluster shell is not available on off: the cluster shell is turned off for off (clusterShell.enabled: false in the clusters file)',
    });
    expect(server.get(ShellAdmission).caps.size).toBe(0);
  });

  it('gives the read tier kubectl mode on kube, refuses another mode, and audits the effective mode', async () => {
    const other = await open(reader, 'kube', { mode: 'bash' });
    expect(other.status).toBe(403);
    expect(await other.json()).toMatchObject({
      error: 'E_FORBIDDEN',
      message: expect.stringMatching(
        /^shell mode "bash" is not offered to tier read on kube: its shells run in kubectl mode/,
      ) as unknown,
    });
    // a policy refusal, so it is audited like the tier refusal
    const denied = server.get(AuditStore).query({ verb: 'cluster_shell_denied', limit: 10 }).events;
    expect(denied.map((e) => e.body)).toContainEqual(
      expect.objectContaining({ cluster: 'kube', code: 'E_FORBIDDEN', tier: 'read' }),
    );
    const { sessionId, client } = await connect(reader, 'kube');
    await readyOf(client);
    expect(client.frames[0]).toMatchObject({ type: 'hello', cluster: 'kube', mode: 'kubectl' });
    const pod = await until('the kube session pod', () => pods.get(sessionId));
    const envOf = Object.fromEntries((pod.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(envOf['PERISCOPE_SHELL_MODE']).toBe('kubectl');
    // no template on this cluster: the default resources, only the server-wide label
    expect(pod.spec?.containers[0]?.resources).toEqual({
      requests: { cpu: '50m', memory: '64Mi' },
      limits: { cpu: '1', memory: '512Mi' },
    });
    expect(pod.metadata?.labels?.['fleet']).toBe('lab');
    expect(pod.metadata?.annotations).toBeUndefined();
    client.control({ type: 'close' });
    await client.closed;
    const audit = await until('the close record', () => {
      const events = server.get(AuditStore).bySession(sessionId);
      return events.length === 2 ? events : undefined;
    });
    expect(audit.map((e) => [e.verb, (e.body as { mode?: string }).mode])).toEqual([
      ['cluster_shell_open', 'kubectl'],
      ['cluster_shell_close', 'kubectl'],
    ]);
  });

  it("creates the tuned cluster's pod with exactly its template, writes inClusterServer, caps and idles per cluster", async () => {
    const { sessionId, client } = await connect(admin, 'tuned');
    await readyOf(client);
    expect(client.frame('closed')).toBeUndefined();
    const pod = await until('the tuned session pod', () => pods.get(sessionId));
    expect(pod.metadata?.labels).toEqual({
      fleet: 'lab',
      team: 'sre',
      'app.kubernetes.io/name': 'periscope-shell',
      'periscope.io/session-id': sessionId,
      'periscope.io/tier': 'admin',
      'periscope.io/cluster-shell': 'true',
    });
    expect(pod.metadata?.annotations).toEqual({ 'example.com/owner': 'SRE team' });
    expect(pod.spec?.containers[0]?.resources).toEqual({
      requests: { cpu: '20m', memory: '32Mi' },
      limits: { cpu: '500m', memory: '256Mi' },
    });
    expect(pod.spec?.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(pod.spec?.priorityClassName).toBe(PRIORITY_CLASS);
    expect(pod.spec?.priority).toBe(1000);
    expect(pod.spec?.nodeSelector).toBeUndefined();
    // Ours, plus the two the apiserver's DefaultTolerationSeconds plugin adds to every pod.
    expect(pod.spec?.tolerations?.[0]).toEqual({
      key: 'periscope.test/dedicated',
      operator: 'Equal',
      value: 'shells',
      effect: 'NoSchedule',
    });
    expect(
      (pod.spec?.tolerations ?? [])
        .slice(1)
        .map((t) => t.key)
        .sort(),
    ).toEqual(['node.kubernetes.io/not-ready', 'node.kubernetes.io/unreachable']);
    // Still restricted: the namespace enforces it and the pod was admitted.
    expect(pod.spec?.containers[0]?.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });

    const secret = JSON.parse(
      await env.cluster.kubectlOk([
        '-n',
        SHELL_NS,
        'get',
        'secret',
        `periscope-shell-${sessionId}`,
        '-o',
        'json',
      ]),
    ) as k8s.V1Secret;
    const kubeconfig = parse(Buffer.from(secret.data?.['kubeconfig'] ?? '', 'base64').toString('utf8')) as {
      clusters: { cluster: { server: string } }[];
    };
    expect(kubeconfig.clusters[0]?.cluster.server).toBe(IN_CLUSTER_SERVER);
    expect(secret.metadata?.labels?.['team']).toBe('sre');

    // The cluster's cap (1), not the server's (10).
    const second = await open(reader, 'tuned');
    expect(second.status).toBe(429);
    expect(await second.json()).toMatchObject({ error: 'E_CAP_CLUSTER', limit: 1 });

    // The cluster's idle cut (8 s), not the server's (1200 s).
    const warned = Date.now();
    await until('the idle warning', () => client.frame('idle_warn'), 30_000);
    await client.closed;
    expect(client.frame('closed')).toMatchObject({ reason: 'idle' });
    expect(Date.now() - warned).toBeLessThan(30_000);
    const close = await until('the close record', () =>
      server
        .get(AuditStore)
        .bySession(sessionId)
        .find((e) => e.verb === 'cluster_shell_close'),
    );
    expect(close.body).toMatchObject({ mode: 'bash', close_reason: 'idle' });
  });
});
