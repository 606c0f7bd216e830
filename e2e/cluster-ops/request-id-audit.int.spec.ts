import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as k8s from '@kubernetes/client-node';
import { DirectGateway, shellObjectName, type ClusterGateway } from '@periscope/cluster-ops';
import { isRequestId } from '@periscope/protocol';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { registerClusterOps } from '../../apps/agent/src/cluster/cluster-op-handlers';
import { serveExecStream } from '../../apps/agent/src/exec/tunnel-exec';
import { SqliteAuditLog } from '../../apps/server/src/audit/audit-log';
import { AuditStore } from '../../apps/server/src/audit/audit-store';
import { ShellDriver } from '../../apps/server/src/cluster-shell/shell-driver';
import { DEFAULT_AUTH } from '../../apps/server/src/config/auth-file';
import type { ClusterShellSettings, ExecSettings } from '../../apps/server/src/config/server-config';
import { PodExecDriver } from '../../apps/server/src/pod-exec/pod-exec-driver';
import { AgentGateway } from '../../apps/server/src/tunnel/agent-gateway';
import { TestClusterClient, type AuditEvent } from '../k8s/cluster';
import { log, startHarness, type Harness } from '../tunnel/tunnel-fixture';
import { SHELL_NS, startShellCluster } from './shell-cluster';
import { shellNamespaceRbac } from './shell-rbac';

const cluster = new TestClusterClient(inject('cluster'));

const IO = {
  status: () => undefined,
  size: () => ({ cols: 80, rows: 24 }),
  handlers: { onOutput: () => true, onExit: () => undefined, onError: () => undefined },
};

/** The apiserver's audit events (final stage) of one request id. */
function eventsOf(rid: string): AuditEvent[] {
  return cluster.auditEvents().filter((e) => e.auditID === rid && e.stage === 'ResponseComplete');
}

/** Why the apiserver refuses a pod in `ns` (a server-side dry run), or '' when it does not. */
async function podRefusal(ns: string): Promise<string> {
  const probe = JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'quota-probe', namespace: ns },
    spec: { containers: [{ name: 'c', image: 'busybox' }] },
  });
  const r = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], { input: probe });
  return r.code === 0 ? '' : r.stderr;
}

/** `verb resource[/subresource] code`, for readable comparisons. */
function summary(e: AuditEvent): string {
  const r = e.objectRef;
  return `${e.verb} ${r?.resource ?? '?'}${r?.subresource !== undefined ? `/${r.subresource}` : ''} ${e.responseStatus?.code ?? '?'}`;
}

/**
 * The troubleshooting lookup, for real: a cluster-shell session whose Pod create the apiserver
 * refuses (the shell namespace's ResourceQuota allows no pods), opened the way the server opens one
 * (ShellDriver over the cluster's gateway), directly with a kubeconfig and through an agent's
 * tunnel. The request id in the error the person sees and in the `cluster_shell_close` record is
 * the `auditID` of the apiserver's audit event of the refused create, and of the Secret, token and
 * identity calls before it; every apiserver call on the session's objects carries one of the
 * session's request ids.
 */
describe.each(['direct', 'agent'] as const)(
  'request ids of cluster-shell sessions (%s) reach the apiserver audit log',
  (kind) => {
    const ns = `rid-${kind}-${Date.now().toString(36)}`;
    let direct: DirectGateway;
    let gateway: ClusterGateway;
    let harness: Harness | undefined;
    let audit: AuditStore;

    beforeAll(async () => {
      await cluster.createNamespace(ns);
      await cluster.apply(shellNamespaceRbac(ns, ['admin'], { admin: 'view' }));
      // No pods in the shell namespace: the quota admission refuses the session's Pod (403). Without
      // a quota controller on this plane the status is set by hand, as the controller would.
      await cluster.apply(
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'ResourceQuota',
          metadata: { name: 'no-pods', namespace: ns },
          spec: { hard: { pods: '0' } },
        }),
      );
      await cluster.kubectlOk([
        '-n',
        ns,
        'patch',
        'resourcequota',
        'no-pods',
        '--subresource=status',
        '--type=merge',
        '-p',
        JSON.stringify({ status: { hard: { pods: '0' }, used: { pods: '0' } } }),
      ]);
      await cluster.waitFor('the pod quota to be enforced', async () =>
        /exceeded quota/.test(await podRefusal(ns)),
      );
      const token = (
        await cluster.kubectlOk(['-n', ns, 'create', 'token', 'provisioner', '--duration=1h'])
      ).trim();
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(cluster.kubeconfig(`provisioner-${kind}`, { token }));
      direct = new DirectGateway(kc, { preferClusterInfo: true });
      if (kind === 'direct') gateway = direct;
      else {
        const h = (harness = await startHarness());
        const agent = await h.agent('edge-1');
        registerClusterOps(agent.rpc, direct, { enabled: true, tiers: ['admin'], namespace: ns });
        const deadline = Date.now() + 10_000;
        while (!h.server.link('edge-1')?.mux.attached && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 20));
        expect(h.server.link('edge-1')?.mux.attached, 'agent attached within 10 s').toBe(true);
        gateway = new AgentGateway(() => h.server.link('edge-1'), 'edge-1');
      }
      audit = new AuditStore(join(mkdtempSync(join(tmpdir(), 'rid-audit-')), 'audit.db'), {
        sink: () => undefined,
      });
    });

    afterAll(async () => {
      await harness?.stop();
    });

    function driver(sessionId: string, settings: Partial<ClusterShellSettings> = {}): ShellDriver {
      return new ShellDriver(
        {
          sessionId,
          subject: 'alice@example.com',
          tier: 'admin',
          cluster: kind,
          mode: 'bash',
          release: () => undefined,
        },
        gateway,
        {
          namespace: ns,
          image: 'unmapped/periscope-shell:0',
          imagePullPolicy: 'IfNotPresent',
          podStartTimeoutSeconds: 5,
          maxSessionSeconds: 3600,
          transcriptMaxBytes: 64 * 1024,
          pod: {},
          ...settings,
        } as ClusterShellSettings,
        new SqliteAuditLog(audit),
        pino({ level: 'silent' }),
      );
    }

    it('the refused Pod create, and the Secret and token calls before it, carry the request id the person and the close record see', async () => {
      const sessionId = randomUUID();
      const name = shellObjectName(sessionId);
      const d = driver(sessionId);
      const err = await d.start(IO).catch((e: unknown) => e);
      const { error } = d.classifyStartError(err);
      expect(error.code).toBe('E_PROVISION');
      expect(error.message).toMatch(/^pod failed \(HTTP 403\): .*exceeded quota/);
      const rid = /\(request id ([0-9a-f-]+)\)$/.exec(error.message)?.[1];
      expect(isRequestId(rid), `request id in "${error.message}"`).toBe(true);
      await d.finish({ reason: 'provision_failed', exitCode: null, bytesIn: 0, bytesOut: 0, durationMs: 1 });

      // The close record has the same id, and the teardown's own.
      const close = audit.bySession(sessionId).find((e) => e.verb === 'cluster_shell_close');
      const ids = close?.body['request_ids'] as Record<string, string> | undefined;
      expect(ids?.['provision']).toBe(rid);
      expect(isRequestId(ids?.['teardown'])).toBe(true);

      // The apiserver's audit log, joined by that id: the refused create and the calls before it.
      await expect
        .poll(() => eventsOf(rid!).some((e) => e.verb === 'create' && e.objectRef?.resource === 'pods'), {
          timeout: 10_000,
        })
        .toBe(true);
      const events = eventsOf(rid!);
      const podCreate = events.find((e) => e.verb === 'create' && e.objectRef?.resource === 'pods');
      expect(podCreate).toMatchObject({
        objectRef: { namespace: ns, name },
        responseStatus: { code: 403 },
        user: { username: `system:serviceaccount:${ns}:provisioner` },
      });
      // Even at Metadata level the event says why.
      expect((podCreate?.responseStatus as { message?: string } | undefined)?.message).toMatch(
        /exceeded quota: no-pods/,
      );
      expect(events.map(summary)).toEqual(
        expect.arrayContaining([
          'create secrets 201',
          'create serviceaccounts 201',
          'create serviceaccounts/token 201',
          'update secrets 200',
          'create clusterroles 201',
          'create clusterrolebindings 201',
          'create pods 403',
          // what the failed provision made is removed under the same id
          'delete secrets 200',
          'delete serviceaccounts 200',
        ]),
      );
      // The teardown at the close is its own operation, with its own id.
      await expect
        .poll(() => eventsOf(ids!['teardown']!).map(summary).sort(), { timeout: 10_000 })
        .toEqual(
          [
            'delete clusterrolebindings 404',
            'delete clusterroles 404',
            'delete pods 404',
            'delete secrets 404',
            'delete serviceaccounts 404',
          ].sort(),
        );
      // No call on the session's objects went out without one of the session's request ids.
      const sessionIds = new Set(Object.values(ids ?? {}));
      const onSession = cluster
        .auditEvents()
        .filter((e) => e.stage === 'ResponseComplete' && e.objectRef?.name === name);
      expect(onSession.length).toBeGreaterThanOrEqual(events.length);
      expect(onSession.filter((e) => !sessionIds.has(e.auditID)).map(summary)).toEqual([]);

      if (harness) {
        // Both tunnel ends recorded the request under the same id, with the apiserver's refusal.
        const serverRecord = harness.server.link('edge-1')?.ring.find((r) => r.rid === rid);
        expect(serverRecord).toMatchObject({ op: 'shell.provision', outcome: 'error' });
        expect(serverRecord?.error).toMatch(/exceeded quota/);
      }
    });

    it('pod exec: the default-container lookup and the exec call carry the ids exec_close lists', async () => {
      const pod = `no-such-pod-${Date.now().toString(36)}`;
      const run = async (container: string | undefined): Promise<Record<string, string>> => {
        const sessionId = randomUUID();
        const d = new PodExecDriver(
          {
            sessionId,
            principal: { subject: 'alice@example.com', email: '', groups: [], tier: 'admin' },
            subject: 'alice@example.com',
            cluster: kind,
            namespace: ns,
            pod,
            container,
            command: ['sh'],
            tty: false,
            settings: {} as ExecSettings,
            release: () => undefined,
          },
          gateway,
          { ...DEFAULT_AUTH.authorization, mode: 'shared' },
          new SqliteAuditLog(audit),
        );
        // Direct, the refused exec rejects the start; through an agent the stream opens first and
        // the apiserver's refusal arrives on it. Either way the call has gone out by now or soon.
        const channel = await d.start(IO).catch(() => undefined);
        channel?.close();
        await d.finish({ reason: 'exec_failed', exitCode: null, bytesIn: 0, bytesOut: 0, durationMs: 1 });
        const close = audit.bySession(sessionId).find((e) => e.verb === 'exec_close');
        return (close?.body['request_ids'] ?? {}) as Record<string, string>;
      };
      // No container named: the lookup lists the namespace's pods under its id, and finds none.
      const lookup = await run(undefined);
      expect(Object.keys(lookup)).toEqual(['resolve']);
      await expect
        .poll(() => eventsOf(lookup['resolve']!).map(summary), { timeout: 10_000 })
        .toEqual(['list pods 200']);
      // A container named: the exec itself goes out under its id; the apiserver answers 404. (This
      // agent serves cluster operations only; an agent's exec stream sends the id it is given,
      // proven for the shell's attach below, which goes through the same openExec.)
      if (kind === 'agent') return;
      const attach = await run('c');
      expect(Object.keys(attach)).toEqual(['attach']);
      await expect
        .poll(() => eventsOf(attach['attach']!).map(summary), { timeout: 10_000 })
        .toEqual([expect.stringMatching(/^(get|create) pods\/exec 404$/)]);
    });

    it('the pod read-back, watch and event list of a pod that never starts carry the provision request id', async () => {
      await cluster.kubectlOk(['-n', ns, 'delete', 'resourcequota', 'no-pods']);
      const sessionId = randomUUID();
      const d = driver(sessionId, {
        podStartTimeoutSeconds: 2,
        pod: { nodeSelector: { 'periscope.io/pool': 'nowhere' } },
      });
      await cluster.waitFor('the pod quota to be gone', async () => (await podRefusal(ns)) === '');
      const err = await d.start(IO).catch((e: unknown) => e);
      const { error } = d.classifyStartError(err);
      expect(error.message).toMatch(/not ready within 2 s: not scheduled to any node/);
      const rid = /\(request id ([0-9a-f-]+)\)$/.exec(error.message)?.[1] ?? '';
      await d.finish({
        reason: 'provision_failed',
        exitCode: null,
        bytesIn: 0,
        bytesOut: 0,
        durationMs: 1,
      });
      await expect
        .poll(() => eventsOf(rid).map(summary), { timeout: 10_000 })
        .toEqual(
          expect.arrayContaining([
            'create pods 201',
            'get pods 200',
            'watch pods 200',
            'list events 200',
            'delete pods 200',
          ]),
        );
    });
  },
);

/**
 * A session that starts, on a cluster whose node runs the shell image: the attach (the exec), the
 * command-log read at the end and the teardown each reach the apiserver under their own request
 * id, directly and through an agent; nothing the provisioner does on the session's objects goes
 * without one of them.
 */
describe('request ids of a cluster-shell session that starts reach the apiserver audit log', () => {
  let env: Awaited<ReturnType<typeof startShellCluster>>;
  let harness: Harness;
  const gateways = new Map<'direct' | 'agent', ClusterGateway>();

  beforeAll(async () => {
    env = await startShellCluster(inject('cluster').binDir);
    const direct = new DirectGateway(env.provisionerKc, { preferClusterInfo: true });
    gateways.set('direct', direct);
    const h = (harness = await startHarness());
    const agent = await h.agent('edge-1', { onOpen: (s, o) => void serveExecStream(direct, s, o, log) });
    registerClusterOps(agent.rpc, direct, { enabled: true, tiers: ['admin'], namespace: SHELL_NS });
    const deadline = Date.now() + 10_000;
    while (!h.server.link('edge-1')?.mux.attached && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    gateways.set('agent', new AgentGateway(() => h.server.link('edge-1'), 'edge-1'));
  });

  afterAll(async () => {
    await harness.stop();
    await env.stop();
  });

  it.each(['direct', 'agent'] as const)(
    '%s: attach, command-log read and teardown each carry their own id',
    async (kind) => {
      const sessionId = randomUUID();
      const name = shellObjectName(sessionId);
      const store = new AuditStore(join(mkdtempSync(join(tmpdir(), 'rid-audit-')), 'audit.db'), {
        sink: () => undefined,
      });
      const d = new ShellDriver(
        {
          sessionId,
          subject: 'alice@example.com',
          tier: 'admin',
          cluster: kind,
          mode: 'bash',
          release: () => undefined,
        },
        gateways.get(kind)!,
        {
          namespace: SHELL_NS,
          image: env.image,
          imagePullPolicy: 'IfNotPresent',
          podStartTimeoutSeconds: 30,
          maxSessionSeconds: 3600,
          transcriptMaxBytes: 64 * 1024,
          pod: {},
        } as ClusterShellSettings,
        new SqliteAuditLog(store),
        pino({ level: 'silent' }),
      );
      const exec = await d.start(IO);
      exec.close();
      await d.finish({ reason: 'client_close', exitCode: null, bytesIn: 0, bytesOut: 0, durationMs: 1 });
      const close = store.bySession(sessionId).find((e) => e.verb === 'cluster_shell_close');
      expect(close?.body['commands_unavailable']).toBeUndefined(); // the read went through
      const ids = (close?.body['request_ids'] ?? {}) as Record<string, string>;
      expect(Object.keys(ids).sort()).toEqual(['attach', 'provision', 'read_log', 'teardown']);
      expect(new Set(Object.values(ids)).size).toBe(4);

      const execOf = (rid: string): string[] =>
        env.cluster
          .auditEvents()
          .filter((e) => e.auditID === rid && e.stage === 'ResponseComplete')
          .map(summary)
          .filter((s) => / pods\/exec /.test(s));
      await expect.poll(() => execOf(ids['attach']!), { timeout: 10_000 }).toHaveLength(1);
      await expect.poll(() => execOf(ids['read_log']!), { timeout: 10_000 }).toHaveLength(1);
      const byId = (rid: string): string[] =>
        env.cluster
          .auditEvents()
          .filter((e) => e.auditID === rid && e.stage === 'ResponseComplete')
          .map(summary);
      await expect
        .poll(() => byId(ids['teardown']!).sort(), { timeout: 10_000 })
        .toEqual(
          [
            'delete clusterrolebindings 200',
            'delete clusterroles 200',
            'delete pods 200',
            'delete secrets 200',
            'delete serviceaccounts 200',
          ].sort(),
        );
      expect(byId(ids['provision']!)).toEqual(
        expect.arrayContaining([
          'create secrets 201',
          'create serviceaccounts/token 201',
          'create pods 201',
          'get pods 200',
        ]),
      );
      // Everything the provisioner did on the session's objects carries one of the session's ids.
      const provisioner = `system:serviceaccount:${SHELL_NS}:provisioner`;
      const sessionIds = new Set(Object.values(ids));
      await expect
        .poll(
          () =>
            env.cluster
              .auditEvents()
              .filter(
                (e) =>
                  e.stage === 'ResponseComplete' &&
                  e.objectRef?.name === name &&
                  e.user.username === provisioner &&
                  !sessionIds.has(e.auditID),
              )
              .map(summary),
          { timeout: 5_000 },
        )
        .toEqual([]);
    },
  );
});
