/**
 * The session records (cluster-shell open and close) in the PostgreSQL audit store, through real
 * servers and a real shell on a local cluster: one server on PostgreSQL alone, then replicas
 * sharing PostgreSQL and Redis, one of them killed (SIGKILL) with a session live: another replica
 * writes that session's close once, with `close_reason: replica_lost`, and never closes a session
 * whose replica is alive.
 */
import 'reflect-metadata';

import type { ChildProcessByStdio } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { RECORD_LEASE } from '../../apps/server/src/shared-state/shared-state.service';
import { ORPHAN_SWEEP, TerminalSessions } from '../../apps/server/src/terminal/terminal-sessions.service';
import { SHELL_NS, startShellCluster } from '../cluster-ops/shell-cluster';
import { devLogin } from '../support/dev-login';
import { spawnNode, terminate, waitHttp } from '../support/node-process';
import { pgQuery, startPostgres, type PostgresServer } from '../support/postgres-server';
import { startRedisServer, type TestRedis } from '../support/redis-server';
import { TerminalClient } from '../support/terminal-client';
import { startTestServer, testServerConfig, writeConfigDir, type TestServer } from '../support/test-server';
import { until } from '../support/wait';

const ORIGIN = 'http://localhost:8080';
const USER = 'alice@example.com';
const root = resolve(__dirname, '../..');

interface Row {
  id: string;
  time: Date;
  verb: string;
  outcome: string;
  body: string;
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => {
        if (a !== null && typeof a === 'object') done(a.port);
        else fail(new Error('no port'));
      });
    });
  });
}

describe('session audit records on PostgreSQL', () => {
  let env: Awaited<ReturnType<typeof startShellCluster>>;
  let pg: PostgresServer;
  let redis: TestRedis;
  let dir: string;
  let databases = 0;
  const servers: TestServer[] = [];
  let child: ChildProcessByStdio<null, Readable, Readable> | undefined;
  /** the killed replica's last output lines (bounded), for a failure message */
  const childLines: string[] = [];

  beforeAll(async () => {
    // Each is kept as soon as it is up, so that afterAll stops it even when another failed.
    await Promise.all([
      startShellCluster(inject('cluster').binDir).then((e) => (env = e)),
      startPostgres({ startTimeoutMs: 90_000 }).then((p) => (pg = p)),
      startRedisServer().then((r) => (redis = r)),
    ]);
    const work = mkdtempSync(join(tmpdir(), 'periscope-audit-pg-sessions-'));
    const kubeconfig = join(work, 'provisioner.kubeconfig');
    writeFileSync(kubeconfig, env.provisionerKc.exportConfig());
    dir = writeConfigDir(
      'audit-pg-sessions',
      kubeconfig,
      { groupTiers: { admins: 'admin' }, users: [{ subject: USER, groups: ['admins'] }] },
      [`{ name: lab, backend: kubeconfig, kubeconfigPath: ${kubeconfig} }`],
    );
  }, 300_000);

  afterAll(async () => {
    if (child) await terminate(child, 5_000);
    for (const s of servers) await s.stop();
    // Unset when beforeAll failed before it was up.
    await (redis as TestRedis | undefined)?.stop();
    await (pg as PostgresServer | undefined)?.stop();
    await (env as typeof env | undefined)?.stop();
  }, 120_000);

  const newDatabase = (): Promise<string> => pg.createDatabase(`sessions_${process.pid}_${++databases}`);

  /** The server settings every replica here shares: the shell on `lab`, audit in `database`. */
  const settings = (database: string, data: string): Record<string, string> => ({
    PERISCOPE_DATA_DIR: join(dir, data),
    PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
    PERISCOPE_CLUSTER_SHELL_NAMESPACE: SHELL_NS,
    PERISCOPE_CLUSTER_SHELL_IMAGE: env.image,
    PERISCOPE_PUBLIC_URL: ORIGIN,
    PERISCOPE_METRICS_PORT: '0',
    PERISCOPE_DATABASE_URL: database,
  });

  async function start(vars: Record<string, string>): Promise<TestServer> {
    const s = await startTestServer(testServerConfig(dir, vars));
    servers.push(s);
    return s;
  }

  function rows(database: string, sessionId: string): Promise<Row[]> {
    return pgQuery<Row>(
      database,
      'SELECT id, time, verb, outcome, body FROM audit_events WHERE session_id = $1 ORDER BY id',
      [sessionId],
    );
  }

  const closes = async (database: string, sessionId: string): Promise<Row[]> =>
    (await rows(database, sessionId)).filter((r) => r.verb === 'cluster_shell_close');

  /** A cluster shell through `base`, attached and answering. */
  async function openShell(
    base: string,
  ): Promise<{ client: TerminalClient; sessionId: string; cookie: string }> {
    const cookie = await devLogin(base, USER);
    const res = await fetch(`${base}/api/clusters/lab/shell/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie },
      body: '{}',
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { ticket, sessionId } = (await res.json()) as { ticket: string; sessionId: string };
    const client = new TerminalClient(
      `${base.replace('http', 'ws')}/api/clusters/lab/shell?ticket=${ticket}`,
      {
        cookie,
        origin: ORIGIN,
      },
    );
    await client.opened;
    await until(
      'the shell to attach',
      () =>
        client.frames.some((f) => f['type'] === 'status' && f['phase'] === 'attaching') && client.bytes > 0,
      120_000,
    );
    client.type('echo ready-$((40+2))\n');
    await client.waitText('the shell to answer', /ready-42/, 60_000);
    return { client, sessionId, cookie };
  }

  /** GET /api/audit for one session, newest first. */
  async function apiEvents(
    base: string,
    cookie: string,
    sessionId: string,
  ): Promise<{ verb: string; outcome: string; body: Record<string, unknown> }[]> {
    const res = await fetch(`${base}/api/audit?session_id=${sessionId}`, { headers: { cookie } });
    expect(res.status).toBe(200);
    return (
      (await res.json()) as { events: { verb: string; outcome: string; body: Record<string, unknown> }[] }
    ).events;
  }

  it('one server on PostgreSQL (no Redis): the open and exactly one close are in PostgreSQL, none in a local file', async () => {
    const database = await newDatabase();
    const server = await start(settings(database, 'data-single'));
    const { client, sessionId, cookie } = await openShell(server.base);
    // The open is durable before the upgrade completed.
    expect((await rows(database, sessionId)).map((r) => r.verb)).toEqual(['cluster_shell_open']);
    client.type('exit 3\n');
    await client.closed;
    expect(client.frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 3 });
    await until('the close record', async () => (await closes(database, sessionId)).length > 0, 60_000);

    const events = await apiEvents(server.base, cookie, sessionId);
    expect(events.map((e) => e.verb)).toEqual(['cluster_shell_close', 'cluster_shell_open']);
    expect(events[0]).toMatchObject({
      outcome: 'error', // exit code 3
      body: { session_id: sessionId, cluster: 'lab', mode: 'bash', close_reason: 'exit', exit_code: 3 },
    });
    expect(events[1]?.body).toMatchObject({ session_id: sessionId, cluster: 'lab', actor: USER });
    expect(await closes(database, sessionId)).toHaveLength(1);
    // Nothing went to a local SQLite store.
    expect(existsSync(join(dir, 'data-single', 'audit.db'))).toBe(false);
    await server.stop();
    servers.splice(servers.indexOf(server), 1);
  }, 240_000);

  it('replicas on PostgreSQL and Redis: a live session of another replica is left alone; once that replica is killed, exactly one close (replica_lost)', async () => {
    const database = await newDatabase();
    const shared = {
      PERISCOPE_REDIS_URL: redis.url,
      PERISCOPE_REPLICA_SECRET: 'replica-secret-shared-by-the-test-replicas',
    };

    // Replica A in its own process, so that it can be killed (SIGKILL: no goodbye, no close).
    const port = await freePort();
    const aBase = `http://127.0.0.1:${port}`;
    child = spawnNode(
      ['--enable-source-maps', join(root, 'apps/server/dist/main.js')],
      {
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
        PERISCOPE_LOG_LEVEL: 'warn',
        PERISCOPE_LISTEN_ADDRESS: '127.0.0.1',
        PERISCOPE_HTTP_PORT: String(port),
        PERISCOPE_AGENT_TUNNEL_PORT: String(await freePort()),
        PERISCOPE_REPLICA_ID: 'replica-a',
        ...settings(database, 'data-a'),
        ...shared,
      },
      (line) => {
        childLines.push(line.slice(0, 500));
        if (childLines.length > 100) childLines.shift();
      },
    );
    const a = child;
    const alive = (): boolean => a.exitCode === null && a.signalCode === null;
    try {
      await waitHttp(`${aBase}/healthz`, 90_000, alive);
    } catch (err) {
      throw new Error(`replica A did not start: ${(err as Error).message}\n${childLines.join('\n')}`);
    }
    const { client, sessionId } = await openShell(aBase);

    // Old enough to count as an orphan were its replica gone: only the owner record protects it.
    const [open] = await rows(database, sessionId);
    expect(open?.verb).toBe('cluster_shell_open');
    const openedAt = open?.time.getTime() ?? 0;
    const oldEnough = openedAt + ORPHAN_SWEEP.minAgeMs + 1_000 - Date.now();
    if (oldEnough > 0) await new Promise((r) => setTimeout(r, oldEnough));

    // Replicas B and C start (their start-up sweep runs) while A is alive.
    const b = await start({
      ...settings(database, 'data-b'),
      ...shared,
      PERISCOPE_REPLICA_ID: 'replica-b',
      PERISCOPE_AGENT_TUNNEL_PORT: String(await freePort()),
    });
    const c = await start({
      ...settings(database, 'data-c'),
      ...shared,
      PERISCOPE_REPLICA_ID: 'replica-c',
      PERISCOPE_AGENT_TUNNEL_PORT: String(await freePort()),
    });
    await Promise.all([b, c].map((s) => s.server.get(TerminalSessions).sweep()));
    expect(await closes(database, sessionId), `replica A said:\n${childLines.join('\n')}`).toEqual([]);
    client.type('echo still-$((6*7))\n');
    await client.waitText('the session to go on after the sweeps', /still-42/, 30_000);

    // A dies with the session live; its ownership lease ends, and B or C (whoever notices first)
    // writes the close.
    const killedAt = Date.now();
    a.kill('SIGKILL');
    expect(await client.closed).toBe(1006); // dropped, no close frame
    await until(
      'a close of the lost session',
      async () => (await closes(database, sessionId)).length > 0,
      RECORD_LEASE.leaseMs + 2 * ORPHAN_SWEEP.intervalMs + 30_000,
    );
    // Not before the lease of A's record ended (renewed every third of it until the kill): nobody
    // guesses that a replica is gone.
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual((RECORD_LEASE.leaseMs * 2) / 3 - 1_000);
    // Both survivors sweep again: still exactly one close.
    await Promise.all([b, c].map((s) => s.server.get(TerminalSessions).sweep()));
    const [close, ...more] = await closes(database, sessionId);
    expect(more).toEqual([]);
    expect(close?.outcome).toBe('error');
    expect(JSON.parse(close?.body ?? '{}')).toMatchObject({
      session_id: sessionId,
      cluster: 'lab',
      mode: 'bash',
      actor: USER,
      close_reason: 'replica_lost',
      exit_code: null,
      commands: [],
    });
    // The audit API of either survivor answers the same.
    const fromB = await apiEvents(b.base, await devLogin(b.base, USER), sessionId);
    const fromC = await apiEvents(c.base, await devLogin(c.base, USER), sessionId);
    expect(fromC).toEqual(fromB);
    expect(fromB.map((e) => [e.verb, e.body['close_reason']])).toEqual([
      ['cluster_shell_close', 'replica_lost'],
      ['cluster_shell_open', undefined],
    ]);
  }, 300_000);
});
