/**
 * Session recordings with several server replicas: two server instances share PostgreSQL (the
 * audit and the recordings, in large objects); a pod-exec session recorded through
 * instance A is replayed from instance B (GET /api/sessions/:id/recording) with the bytes and
 * the X-Periscope-Recording-Sha256 header of the close record; a large object modified afterwards
 * cuts B's replay short and is audited; B's retention deletes A's recordings.
 */
import 'reflect-metadata';

import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { parseCast } from '../../apps/server/src/recording/asciicast';
import { PostgresRecordingStore } from '../../apps/server/src/recording/postgres-recording-store';
import { RecordingService, REPLAY_BUFFER_BYTES } from '../../apps/server/src/recording/recording.service';
import { TestClusterClient } from '../k8s/cluster';
import { devLogin } from '../support/dev-login';
import { pgQuery, startPostgres, type PostgresServer } from '../support/postgres-server';
import { readUntilCut } from '../support/streamed-body';
import { TerminalClient } from '../support/terminal-client';
import {
  startExecPod,
  startTestServer,
  testServerConfig,
  writeConfigDir,
  type TestServer,
} from '../support/test-server';
import { until } from '../support/wait';

const cluster = new TestClusterClient(inject('cluster'));
const suffix = Date.now().toString(36);
const ns = `rec-replicas-${suffix}`;
const ORIGIN = 'http://localhost:8080';
const USER = 'alice@example.com';
/** Output of the large session: its recording is above REPLAY_BUFFER_BYTES (replayed as a stream). */
const BULK = 6 * 1024 * 1024;

describe('session recordings shared by replicas (PostgreSQL large objects)', () => {
  let pg: PostgresServer | undefined;
  let database = '';
  let dir = '';
  let a: TestServer | undefined;
  let b: TestServer | undefined;

  beforeAll(async () => {
    await Promise.all([
      startExecPod(cluster, ns, [
        { tier: 'admin', role: 'cluster-admin', name: `rec-replicas-admin-${suffix}`, cluster: true },
      ]),
      startPostgres({ startTimeoutMs: 90_000 }).then((p) => (pg = p)),
    ]);
    if (!pg) throw new Error('PostgreSQL did not start');
    database = await pg.createDatabase(`rec_replicas_${process.pid}`);
    const kc = inject('cluster').adminKubeconfig;
    dir = writeConfigDir('rec-replicas', kc, {
      groupTiers: { admins: 'admin' },
      users: [{ subject: USER, groups: ['admins'] }],
    });
    const settings = (name: string): Record<string, string> => ({
      PERISCOPE_DATA_DIR: join(dir, `data-${name}`),
      PERISCOPE_CLUSTER_SHELL_ENABLED: 'false',
      PERISCOPE_PUBLIC_URL: ORIGIN,
      PERISCOPE_METRICS_PORT: '0',
      PERISCOPE_DATABASE_URL: database,
      PERISCOPE_REPLICA_ID: `replica-${name}`,
      // Below the large session's recording (≈ 6 MiB): the size bound has work to do.
      PERISCOPE_RECORDING_MAX_TOTAL_MB: '4',
    });
    // One after the other: the first applies the migrations, the second finds them done. No Redis:
    // each instance signs its own user in (dev sign-in), and the replay needs only PostgreSQL.
    a = await startTestServer(testServerConfig(dir, settings('a')));
    b = await startTestServer(testServerConfig(dir, settings('b')));
  }, 240_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await pg?.stop();
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
    await cluster.kubectl([
      'delete',
      'clusterrolebinding',
      `rec-replicas-admin-${suffix}`,
      '--ignore-not-found',
    ]);
  }, 120_000);

  const servers = (): { a: TestServer; b: TestServer } => {
    if (!a || !b) throw new Error('the servers did not start (see the beforeAll error)');
    return { a, b };
  };

  function query<T extends Record<string, unknown>>(sql: string, params: unknown[]): Promise<T[]> {
    return pgQuery<T>(database, sql, params);
  }

  async function closeRecord(sessionId: string): Promise<Record<string, unknown>> {
    let body: Record<string, unknown> | undefined;
    await until(
      'the close record in PostgreSQL',
      async () => {
        const [row] = await query<{ body: string }>(
          `SELECT body FROM audit_events WHERE session_id = $1 AND verb = 'exec_close'`,
          [sessionId],
        );
        body = row ? (JSON.parse(row.body) as Record<string, unknown>) : undefined;
        return body !== undefined;
      },
      30_000,
    );
    return body ?? {};
  }

  /** A pod exec through `base` running `command`, until it ends; answers its session id and output. */
  async function execThrough(
    base: string,
    command: string[],
  ): Promise<{ sessionId: string; output: Buffer }> {
    const cookie = await devLogin(base, USER);
    const res = await fetch(`${base}/api/clusters/lab/pods/${ns}/app/exec/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie, origin: ORIGIN },
      body: JSON.stringify({ container: 'main', tty: false, command }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { socketPath, sessionId } = (await res.json()) as { socketPath: string; sessionId: string };
    const client = new TerminalClient(`${base.replace('http', 'ws')}${socketPath}`, {
      cookie,
      origin: ORIGIN,
    });
    await client.opened;
    await client.closed;
    return { sessionId, output: client.output() };
  }

  const replay = async (base: string, sessionId: string): Promise<Response> =>
    fetch(`${base}/api/sessions/${sessionId}/recording`, {
      headers: { cookie: await devLogin(base, USER), origin: ORIGIN },
    });

  let bulkSession = '';
  let smallSession = '';

  it('both instances use the PostgreSQL recording store', () => {
    const { a, b } = servers();
    for (const s of [a, b]) {
      const store = s.server.get(RecordingService).store;
      expect(store).toBeInstanceOf(PostgresRecordingStore);
      expect(store.kind).toBe('postgres');
    }
  });

  it('a session recorded through A is replayed from B: the same bytes, the SHA-256 of the close record', async () => {
    const { a, b } = servers();
    const line = 'replica-recorded-0123456789abcdefghijklmnopqrstuvwxyz';
    const { sessionId, output } = await execThrough(a.base, ['sh', '-c', `yes ${line} | head -c ${BULK}`]);
    bulkSession = sessionId;
    expect(output.length).toBe(BULK);
    const close = await closeRecord(sessionId);
    expect(close).toMatchObject({ recording_id: sessionId });
    expect(close['recording_truncated']).toBeUndefined();
    expect(close['recording_bytes']).toBeGreaterThan(REPLAY_BUFFER_BYTES); // the streamed replay

    const res = await replay(b.base, sessionId);
    expect(res.status, res.status === 200 ? '' : await res.clone().text()).toBe(200);
    expect(res.headers.get('x-periscope-recording-sha256')).toBe(close['recording_sha256']);
    expect(Number(res.headers.get('content-length'))).toBe(close['recording_bytes']);
    const file = Buffer.from(await res.arrayBuffer());
    expect(file.length).toBe(close['recording_bytes']);
    expect(createHash('sha256').update(file).digest('hex')).toBe(close['recording_sha256']);
    // The recorded output is what the client of A received.
    const out = createHash('sha256');
    for (const e of parseCast(file.toString('utf8')).events) if (e.code === 'o') out.update(e.data, 'utf8');
    expect(out.digest('hex')).toBe(createHash('sha256').update(output).digest('hex'));
    // The row of the recording agrees, and no replica kept a file.
    const [row] = await query<{ bytes: string; sha256: string; closed: boolean }>(
      'SELECT bytes, sha256, closed_at IS NOT NULL AS closed FROM recordings WHERE id = $1',
      [sessionId],
    );
    expect(row).toEqual({ bytes: String(file.length), sha256: close['recording_sha256'], closed: true });
    expect(existsSync(join(dir, 'data-a', 'recordings'))).toBe(false);
    expect(existsSync(join(dir, 'data-b', 'recordings'))).toBe(false);

    // A small recording (checked in memory before it is sent) from B too.
    const small = await execThrough(a.base, ['sh', '-c', 'echo small-$((6*7))']);
    smallSession = small.sessionId;
    const smallClose = await closeRecord(small.sessionId);
    const smallRes = await replay(b.base, small.sessionId);
    expect(smallRes.status).toBe(200);
    expect(smallRes.headers.get('x-periscope-recording-sha256')).toBe(smallClose['recording_sha256']);
    const smallFile = Buffer.from(await smallRes.arrayBuffer());
    expect(createHash('sha256').update(smallFile).digest('hex')).toBe(smallClose['recording_sha256']);
    expect(smallFile.toString('utf8')).toContain('small-42');
  }, 180_000);

  it('a large object modified after the session: B cuts the replay short and audits the integrity failure', async () => {
    const { b } = servers();
    expect(bulkSession).not.toBe('');
    const [row] = await query<{ loid: number }>('SELECT loid FROM recordings WHERE id = $1', [bulkSession]);
    expect(row).toBeDefined();
    await query('SELECT lo_put($1, $2, $3)', [row?.loid, 3 * 1024 * 1024, Buffer.from('TAMPERED')]);
    const res = await replay(b.base, bulkSession);
    expect(res.status).toBe(200); // streamed: the check ends with the last chunk
    const length = Number(res.headers.get('content-length'));
    const { bytes: got, cut } = await readUntilCut(res);
    expect(cut, `the transfer ended after ${got} of ${length} bytes without an error`).toBeDefined();
    expect(got).toBeLessThan(length);
    await until(
      'the integrity failure in the audit',
      async () =>
        (
          await query<{ body: string }>(
            `SELECT body FROM audit_events WHERE session_id = $1 AND verb = 'session_replay' AND outcome = 'error'`,
            [bulkSession],
          )
        ).some((r) => {
          const body = JSON.parse(r.body) as Record<string, unknown>;
          return body['integrity'] === 'failed' && body['streamed'] === true;
        }),
      10_000,
    );
  }, 60_000);

  it("B's retention: the size bound deletes A's oldest ended recording (row and large object), never one still being written; the age bound deletes that too", async () => {
    const { a, b } = servers();
    // A recording still being written through A (a live session there, as B sees it), above the bound alone.
    const liveId = randomUUID();
    const sink = await a.server.get(RecordingService).store.create(liveId);
    await sink.write(Buffer.alloc(5 * 1024 * 1024, 0x20));
    const objects = async (): Promise<number> =>
      Number((await query<{ n: string }>('SELECT count(*) AS n FROM pg_largeobject_metadata', []))[0]?.n);
    expect(await objects()).toBe(3);

    const bySize = await b.server.get(RecordingService).prune();
    // The oldest ended one (the large one) goes, and then the ended ones fit; the live one is not counted.
    expect(bySize).toMatchObject({ deletedByAge: 0, deletedBySize: 1 });
    expect(
      (await query<{ id: string }>('SELECT id FROM recordings ORDER BY modified_at', [])).map((r) => r.id),
    ).toEqual([smallSession, liveId]);
    expect(await objects()).toBe(2);
    const res = await replay(b.base, bulkSession);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { message: string }).message).toContain('gone');

    // The writer goes on; past the audit retention its recording goes too.
    await sink.write(Buffer.from('more'));
    await sink.close();
    const byAge = await b.server.get(RecordingService).prune(Date.now() + 10_000 * 86_400_000);
    expect(byAge).toMatchObject({ deletedByAge: 2, deletedBySize: 0, bytes: 0 });
    expect(await query('SELECT id FROM recordings', [])).toEqual([]);
    expect(await objects()).toBe(0);
  }, 60_000);
});
