import 'reflect-metadata';

import { createHash } from 'node:crypto';
import { request } from 'node:http';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { OpsListener } from '@periscope/observability';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { AuditStore } from '../../apps/server/src/audit/audit-store';
import { PodExecAdmission } from '../../apps/server/src/pod-exec/pod-exec-admission.service';
import { TerminalSessions } from '../../apps/server/src/terminal/terminal-sessions.service';
import { TestClusterClient } from '../k8s/cluster';
import { devLogin } from '../support/dev-login';
import { TerminalClient } from '../support/terminal-client';
import { testServerConfig, startExecPod, startTestServer, writeConfigDir } from '../support/test-server';
import { until } from '../support/wait';

const cluster = new TestClusterClient(inject('cluster'));
const suffix = Date.now().toString(36);
const ns = `term-${suffix}`;
const ORIGIN = 'http://localhost:8080';

/**
 * Pod exec and resume through the real server against the real apiserver: the terminal
 * protocol, impersonation per tier, resume with exact replay, grace expiry, the sessions API,
 * hostile input.
 */
describe('terminal sessions through the server (pod exec, resume, sessions API)', () => {
  let server: NestExpressApplication;
  let base: string;
  let wsBase: string;
  const cookies: Record<string, string> = {};

  beforeAll(async () => {
    await startExecPod(
      cluster,
      ns,
      (
        [
          ['admin', 'cluster-admin'],
          ['read', 'view'],
        ] as const
      ).map(([tier, role]) => ({ tier, role, name: `term-${tier}-${suffix}`, cluster: true })),
    );

    const kc = inject('cluster').adminKubeconfig;
    const dir = writeConfigDir(
      'terminal',
      kc,
      {
        groupTiers: { admins: 'admin', devs: 'read' },
        users: [
          { subject: 'alice@example.com', groups: ['admins'] },
          { subject: 'bob@example.com', groups: ['devs'] },
          { subject: 'carol@example.com', groups: ['admins'] },
        ],
      },
      [
        `{ name: lab, backend: kubeconfig, kubeconfigPath: ${kc}, exec: { maxSessionsPerUser: 3 } }`,
        `{ name: nox, backend: kubeconfig, kubeconfigPath: ${kc}, exec: { enabled: false } }`,
      ],
    );
    ({ server, base } = await startTestServer(
      testServerConfig(dir, {
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'false',
        PERISCOPE_RESUME_GRACE_SECONDS: '3',
        PERISCOPE_RESUME_BUFFER_BYTES: String(4 * 1024 * 1024),
        PERISCOPE_PUBLIC_URL: ORIGIN,
      }),
    ));
    wsBase = base.replace('http', 'ws');
    for (const u of ['alice', 'bob', 'carol']) cookies[u] = await devLogin(base, `${u}@example.com`);
  }, 120_000);

  afterAll(async () => {
    await server.close();
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
    for (const tier of ['admin', 'read'])
      await cluster.kubectl(['delete', 'clusterrolebinding', `term-${tier}-${suffix}`, '--ignore-not-found']);
  });

  const headers = (user: string): Record<string, string> => ({ cookie: cookies[user] ?? '', origin: ORIGIN });

  async function openExec(
    user: string,
    body: Record<string, unknown>,
    pod = 'app',
  ): Promise<{ sessionId: string; client: TerminalClient }> {
    const res = await fetch(`${base}/api/clusters/lab/pods/${ns}/${pod}/exec/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers(user) },
      body: JSON.stringify(body),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { socketPath, sessionId } = (await res.json()) as { socketPath: string; sessionId: string };
    const client = new TerminalClient(`${wsBase}${socketPath}`, headers(user));
    await client.opened;
    return { sessionId, client };
  }

  it('lists pods as the person and runs an interactive shell in a pod as them; exit 0 is reported', async () => {
    const pods = (await (
      await fetch(`${base}/api/clusters/lab/pods?namespace=${ns}`, { headers: headers('bob') })
    ).json()) as {
      pods: { name: string; containers: string[] }[];
    };
    expect(pods.pods).toEqual([
      expect.objectContaining({ name: 'app', containers: ['main'], phase: 'Running' }),
    ]);

    const { sessionId, client } = await openExec('alice', { container: 'main' });
    client.control({ type: 'resize', cols: 90, rows: 20 });
    // The kubelet carries the size and stdin on separate streams: a resize sent once the command
    // runs may land a moment after the next line is read, so the shell waits for it (up to 5 s).
    client.type(
      'for i in $(seq 50); do [ "$(stty size)" = "20 90" ] && break; sleep 0.1; done; echo "who=$(id -u)"; stty size\n',
    );
    await client.waitText('the command output', /who=\d+[\s\S]*20 90/);
    client.type('exit\n');
    await client.closed;
    expect(client.frames[0]).toMatchObject({
      type: 'hello',
      sessionId,
      kind: 'pod_exec',
      cluster: 'lab',
      namespace: ns,
      pod: 'app',
      container: 'main',
    });
    expect(client.frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });
    const audit = server.get(AuditStore).bySession(sessionId);
    expect(audit.map((e) => e.verb)).toEqual(['exec_open', 'exec_close']);
    expect(audit[1]?.body).toMatchObject({
      actor: 'alice@example.com',
      tier: 'admin',
      namespace: ns,
      pod: 'app',
      container: 'main',
      tty: true,
      exit_code: 0,
      close_reason: 'exit',
    });
    expect(JSON.stringify(audit)).not.toContain('echo "who'); // stdin is never audited
    // The apiserver's own audit log ties the exec to this session and this person.
    const event = await until('the apiserver audit event of the exec', () =>
      cluster
        .auditEvents()
        .find(
          (e) =>
            e.objectRef?.subresource === 'exec' &&
            e.impersonatedUser?.extra?.['audit.periscope.io/session-id']?.[0] === sessionId,
        ),
    );
    expect(event.impersonatedUser).toMatchObject({
      username: 'alice@example.com',
      groups: ['periscope-tier:admin', 'system:authenticated'],
      extra: { 'audit.periscope.io/actor': ['alice@example.com'] },
    });
    expect(server.get(PodExecAdmission).caps.size).toBe(0);
  });

  it('refuses a read-tier operator in the pod (RBAC decides, as them) with E_FORBIDDEN', async () => {
    const { client } = await openExec('bob', { container: 'main' });
    await client.closed;
    expect(client.frames).toContainEqual(
      expect.objectContaining({ type: 'error', code: 'E_FORBIDDEN', retryable: false }),
    );
    expect(String(client.frame('error')?.['message'])).toMatch(/tier read.*pods\/exec/);
    expect(client.frames).toContainEqual({ type: 'closed', reason: 'forbidden' });
  });

  it('a browser drop mid-output and a reconnect within grace deliver every byte exactly once', async () => {
    // ~1.9 MB of numbered lines, produced faster than we read them after the drop.
    const { sessionId, client } = await openExec('alice', {
      container: 'main',
      tty: false,
      command: ['sh', '-c', 'seq 1 300000; sleep 1'],
    });
    await until('some output', () => client.bytes > 100_000, 30_000);
    client.ws.terminate(); // no close frame: an unplanned drop
    await client.closed;
    const received = client.bytes;
    await new Promise((r) => setTimeout(r, 500));
    const live = (await (await fetch(`${base}/api/sessions`, { headers: headers('alice') })).json()) as {
      sessions: { sessionId: string; state: string }[];
    };
    expect(live.sessions).toContainEqual(expect.objectContaining({ sessionId, state: 'detached' }));

    const again = new TerminalClient(
      `${wsBase}/api/sessions/${sessionId}/attach?received=${received}`,
      headers('alice'),
    );
    await again.opened;
    await again.closed;
    expect(again.frames[0]).toMatchObject({ type: 'hello', sessionId, resumed: true });
    expect(again.frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });
    const all = Buffer.concat([client.output().subarray(0, received), again.output()]);
    const expected = Array.from({ length: 300_000 }, (_, i) => `${i + 1}\n`).join('');
    expect(all.length).toBe(Buffer.byteLength(expected));
    expect(createHash('sha256').update(all).digest('hex')).toBe(
      createHash('sha256').update(expected).digest('hex'),
    );
  });

  it('after the grace period the session is closed (reason disconnected), its slot freed, and resume says gone', async () => {
    const { sessionId, client } = await openExec('alice', { container: 'main' });
    await until('the prompt', () => client.bytes > 0, 30_000);
    client.ws.terminate();
    await until(
      'the grace period to pass',
      () =>
        server
          .get(AuditStore)
          .bySession(sessionId)
          .some((e) => e.verb === 'exec_close'),
      10_000,
    );
    const close = server
      .get(AuditStore)
      .bySession(sessionId)
      .find((e) => e.verb === 'exec_close');
    expect(close?.body).toMatchObject({ close_reason: 'disconnected' });
    expect(server.get(PodExecAdmission).caps.size).toBe(0);
    const late = new TerminalClient(
      `${wsBase}/api/sessions/${sessionId}/attach?received=0`,
      headers('alice'),
    );
    expect(await late.closed).toBe(4410);
    expect(late.frame('error')).toMatchObject({ code: 'E_SESSION_GONE', retryable: false });
  });

  it('lists live sessions for their owner; only the owner or an admin can end one, and ending is audited', async () => {
    const { sessionId, client } = await openExec('alice', { container: 'main' });
    await until('the prompt', () => client.bytes > 0, 30_000);
    const asBob = await fetch(`${base}/api/sessions`, { headers: headers('bob') });
    expect(((await asBob.json()) as { sessions: unknown[] }).sessions).toEqual([]);
    expect(
      (await fetch(`${base}/api/sessions/${sessionId}`, { method: 'DELETE', headers: headers('bob') }))
        .status,
    ).toBe(404);
    const asCarol = (await (await fetch(`${base}/api/sessions`, { headers: headers('carol') })).json()) as {
      sessions: { sessionId: string; subject: string }[];
    };
    expect(asCarol.sessions).toContainEqual(
      expect.objectContaining({ sessionId, subject: 'alice@example.com' }),
    );
    expect(
      (
        await fetch(`${base}/api/sessions/${sessionId}`, {
          method: 'DELETE',
          headers: { 'content-type': 'application/json', ...headers('carol') },
          body: JSON.stringify({ reason: 'maintenance window' }),
        })
      ).status,
    ).toBe(204);
    await client.closed;
    expect(client.frames).toContainEqual({
      type: 'closed',
      reason: 'ended_by_admin',
      endedBy: 'carol@example.com',
      endReason: 'maintenance window',
    });
    const events = server.get(AuditStore).bySession(sessionId);
    expect(events.map((e) => e.verb)).toEqual(['exec_open', 'session_end_request', 'exec_close']);
    expect(events[2]?.body).toMatchObject({
      close_reason: 'ended_by_admin',
      ended_by: 'carol@example.com',
      end_reason: 'maintenance window',
    });
    expect(server.get(TerminalSessions).size).toBe(0);
  });

  it('holds the per-cluster cap override under 30 concurrent opens and frees slots on close', async () => {
    const answers = await Promise.all(
      Array.from({ length: 30 }, () =>
        fetch(`${base}/api/clusters/lab/pods/${ns}/app/exec/sessions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers('carol') },
          body: JSON.stringify({ container: 'main' }),
        }),
      ),
    );
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(3); // exec.maxSessionsPerUser: 3 for lab
    expect(statuses.filter((s) => s === 429)).toHaveLength(27);
    const refused = (await answers.find((r) => r.status === 429)?.json()) as Record<string, unknown>;
    expect(refused).toMatchObject({ error: 'E_CAP_USER', limit: 3 });
    expect(refused['activeSessions']).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'pod_exec', namespace: ns, pod: 'app', container: 'main' }),
      ]),
    );
    // Unused tickets give their slots back when they expire (30 s); ending them here is quicker.
    const admission = server.get(PodExecAdmission);
    admission.tickets.clear();
    expect(admission.caps.size).toBe(0);
  });

  it('answers bad input clearly and keeps working: names, disabled clusters, frames, origins, sign-in', async () => {
    const post = (path: string, body: unknown = {}, user = 'alice'): Promise<Response> =>
      fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers(user) },
        body: JSON.stringify(body),
      });
    const dots = await post(`/api/clusters/lab/pods/a..b/app/exec/sessions`);
    expect(dots.status).toBe(400);
    expect(await dots.json()).toMatchObject({ error: 'E_BAD_REQUEST' });
    // `..` itself never reaches a handler as a name: a raw request (fetch would normalise it away).
    const raw = await new Promise<number>((resolve, reject) => {
      const r = request(
        `${base}/api/clusters/lab/pods/../app/exec/sessions`,
        { method: 'POST', headers: headers('alice') },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      r.on('error', reject);
      r.end();
    });
    expect([400, 404]).toContain(raw);
    expect((await post(`/api/clusters/lab/pods/${ns}/a%2Fb/exec/sessions`)).status).toBe(400);
    expect((await post(`/api/clusters/lab/pods/${ns}/p%C3%B6d/exec/sessions`)).status).toBe(400);
    expect((await post(`/api/clusters/l%C3%A4b/pods/${ns}/app/exec/sessions`)).status).toBe(404);
    expect(
      (await post(`/api/clusters/lab/pods/${ns}/app/exec/sessions`, { command: 'rm -rf /' })).status,
    ).toBe(400);
    const off = await post(`/api/clusters/nox/pods/${ns}/app/exec/sessions`);
    expect(off.status).toBe(403);
    expect(await off.json()).toMatchObject({ error: 'E_EXEC_DISABLED' });

    const refusedUpgrade = async (path: string, h: Record<string, string>): Promise<string> => {
      const c = new TerminalClient(`${wsBase}${path}`, h);
      return c.opened.then(
        () => 'accepted',
        (e: unknown) => (e as Error).message,
      );
    };
    expect(await refusedUpgrade(`/api/clusters/lab/pods/${ns}/app/exec`, { origin: ORIGIN })).toMatch(/401/);
    expect(
      await refusedUpgrade(`/api/clusters/lab/pods/${ns}/app/exec`, {
        ...headers('alice'),
        origin: 'https://evil.example',
      }),
    ).toMatch(/403/);
    expect(await refusedUpgrade(`/api/clusters/lab/pods/..%2F..%2Fetc/app/exec`, headers('alice'))).toMatch(
      /400/,
    );
    expect(
      await refusedUpgrade(
        `/api/sessions/00000000-0000-0000-0000-000000000000/attach?received=-1`,
        headers('alice'),
      ),
    ).toMatch(/400/);

    // Hostile frames on a live session: answered, never fatal; an oversized frame drops only that socket.
    const { sessionId, client } = await openExec('alice', { container: 'main' });
    await until('the prompt', () => client.bytes > 0, 30_000);
    client.control({ type: 'resize', cols: 1_000_000, rows: 2 });
    client.ws.send('not json');
    await until(
      'two E_BAD_FRAME answers',
      () => client.frames.filter((f) => f['code'] === 'E_BAD_FRAME').length === 2,
    );
    client.ws.send(Buffer.alloc(65 * 1024, 0x61));
    expect(await client.closed).toBe(1009);
    const back = new TerminalClient(
      `${wsBase}/api/sessions/${sessionId}/attach?received=${client.bytes}`,
      headers('alice'),
    );
    await back.opened;
    back.type('echo still-$((40+2))\n');
    await back.waitText('the session to still work', /still-42/);
    back.control({ type: 'close' });
    await back.closed;
    const close = server
      .get(AuditStore)
      .bySession(sessionId)
      .find((e) => e.verb === 'exec_close');
    expect(close?.body).toMatchObject({ close_reason: 'client_close' });
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it('counts sessions, close reasons and resumes in /metrics (on the ops listener)', async () => {
    const ops = await server.get(OpsListener).listen(0, '127.0.0.1');
    const text = await (await fetch(`${ops}/metrics`)).text();
    const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? 'NaN');
    expect(
      value(/periscope_terminal_sessions_closed_total\{kind="pod_exec",reason="exit"\} (\d+)/),
    ).toBeGreaterThanOrEqual(2);
    expect(
      value(/periscope_terminal_sessions_closed_total\{kind="pod_exec",reason="disconnected"\} (\d+)/),
    ).toBe(1);
    expect(value(/periscope_terminal_resumes_total\{kind="pod_exec",outcome="resumed"\} (\d+)/)).toBe(2);
    expect(value(/periscope_terminal_resumes_total\{kind="unknown",outcome="gone"\} (\d+)/)).toBe(1);
    expect(text).toMatch(/periscope_terminal_session_seconds_count\{kind="pod_exec"\} \d+/);
  });
});
