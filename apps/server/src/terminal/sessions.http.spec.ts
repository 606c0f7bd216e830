import { randomUUID } from 'node:crypto';

import type { NestExpressApplication } from '@nestjs/platform-express';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { END_REASON_MAX_CHARS } from '@periscope/protocol';
import { createDevTierApp, type DevTierApp } from '../testing/dev-tier-app';
import { TerminalSession, type SessionDriver, type SessionEnd } from './terminal-session';
import { TerminalSessions } from './terminal-sessions.service';

/**
 * `GET /api/sessions` and `DELETE /api/sessions/{id}` through the real server (guard, validation
 * pipe, error filter, audit store): who sees and ends which session, and the end reason's rules.
 * The sessions are real TerminalSessions in the server's registry; only their exec is a stand-in
 * that stays "starting" until ended (the whole path against a cluster, with the browser, is
 * e2e/web/admin-sessions.int.spec.ts).
 */
describe('live sessions API (list, end with a reason, permissions)', () => {
  let app: NestExpressApplication;
  let registry: TerminalSessions;
  let as: DevTierApp['as'];
  /** what each session's teardown was told, by session id */
  const ends = new Map<string, SessionEnd>();

  beforeAll(async () => {
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const server = await createDevTierApp({
      prefix: 'periscope-sessions-http-',
      users: [
        { subject: 'root', groups: ['admins'] },
        { subject: 'dev', groups: ['devs'] },
        { subject: 'dev2', groups: ['devs'] },
      ],
      clusters: ['{ name: lab, backend: kubeconfig, kubeconfigPath: {none} }'],
    });
    app = server.app;
    as = server.as;
    registry = app.get(TerminalSessions);
  });

  afterAll(async () => {
    await app.close();
    vi.restoreAllMocks();
  });

  /** A live session of `subject` in the server's registry; its exec never starts (nothing to reach). */
  function live(subject: string, tier: string, kind: 'cluster_shell' | 'pod_exec' = 'cluster_shell'): string {
    const sessionId = randomUUID();
    const driver: SessionDriver = {
      start: () => new Promise(() => undefined),
      classifyExit: () => ({ reason: 'exit', exitCode: 0 }),
      classifyStartError: () => ({
        reason: 'exec_failed',
        error: { code: 'E_EXEC_FAILED', message: 'n/a', retryable: false },
      }),
      finish: (end) => {
        ends.set(sessionId, end);
        return Promise.resolve();
      },
    };
    registry.add(
      new TerminalSession(
        {
          sessionId,
          kind,
          subject,
          tier,
          cluster: 'lab',
          ...(kind === 'cluster_shell'
            ? { mode: 'bash' }
            : { namespace: 'web', pod: 'api-0', container: 'app' }),
          startedAt: new Date(),
        },
        driver,
        {
          idleSeconds: 600,
          idleWarnSeconds: 30,
          heartbeatSeconds: 20,
          maxSessionSeconds: 3600,
          maxWarnSeconds: 0,
          graceSeconds: 0,
          bufferBytes: 1024,
        },
        pino({ level: 'silent' }),
      ),
    );
    return sessionId;
  }

  const ids = (body: unknown): string[] =>
    (body as { sessions: { sessionId: string }[] }).sessions.map((s) => s.sessionId).sort();

  it('lists every session for an admin and only their own for anyone else, with bytes and idle time', async () => {
    const a = live('dev', 'read');
    const b = live('dev2', 'read', 'pod_exec');
    const c = live('root', 'admin');
    const root = await as('root');
    const dev = await as('dev');
    const all = await root.get('/api/sessions').expect(200);
    expect(ids(all.body)).toEqual(expect.arrayContaining([a, b, c].sort()));
    const row = (all.body as { sessions: Record<string, unknown>[] }).sessions.find(
      (s) => s['sessionId'] === b,
    );
    expect(row).toMatchObject({
      kind: 'pod_exec',
      subject: 'dev2',
      tier: 'read',
      cluster: 'lab',
      namespace: 'web',
      pod: 'api-0',
      container: 'app',
      state: 'starting',
      bytesIn: 0,
      bytesOut: 0,
    });
    expect(row?.['idleSeconds']).toEqual(expect.any(Number));
    expect(Date.parse(String(row?.['lastActivityAt']))).not.toBeNaN();
    const mine = await dev.get('/api/sessions').expect(200);
    expect(ids(mine.body)).toEqual([a]);
    // A filter-looking parameter does not widen a non-admin's view.
    expect(ids((await dev.get('/api/sessions?subject=dev2').expect(200)).body)).toEqual([a]);
    await request(app.getHttpServer()).get('/api/sessions').expect(401);
    for (const id of [a, b, c])
      await root.delete(`/api/sessions/${id}`).send({ reason: 'cleanup' }).expect(204);
  });

  it('refuses a non-admin ending someone else’s session (404, as if it did not exist) and leaves it running', async () => {
    const theirs = live('dev2', 'read');
    const adminOnes = live('root', 'admin');
    const dev = await as('dev');
    for (const id of [theirs, adminOnes]) {
      const res = await dev.delete(`/api/sessions/${id}`).send({ reason: 'mine now' }).expect(404);
      expect(res.body).toMatchObject({ error: 'E_NOT_FOUND' });
      expect(registry.get(id)?.state).toBe('starting');
    }
    // Same answer as for a session that never was: no way to probe which ids are live.
    const missing = await dev.delete(`/api/sessions/${randomUUID()}`).expect(404);
    expect(missing.body).toMatchObject({ error: 'E_NOT_FOUND' });
    const root = await as('root');
    const audit = await root.get('/api/audit?verb=session_end_request&actor=dev').expect(200);
    expect((audit.body as { events: unknown[] }).events).toEqual([]);
    await root.delete(`/api/sessions/${theirs}`).expect(204);
    await root.delete(`/api/sessions/${adminOnes}`).expect(204);
  });

  it('an admin ends another person’s session with a reason: close code ended_by_admin, reason and who in the record', async () => {
    const id = live('dev', 'read');
    const root = await as('root');
    const reason = '  incident 42: freezing changes on lab — ünïcode ok  ';
    await root.delete(`/api/sessions/${id}`).send({ reason }).expect(204);
    expect(registry.get(id)).toBeUndefined();
    expect(ends.get(id)).toMatchObject({
      reason: 'ended_by_admin',
      endedBy: { by: 'root', reason: 'incident 42: freezing changes on lab — ünïcode ok' },
    });
    const audit = await root.get(`/api/audit?session_id=${id}`).expect(200);
    expect((audit.body as { events: unknown[] }).events).toMatchObject([
      {
        verb: 'session_end_request',
        actor: 'root',
        body: {
          owner: 'dev',
          by: 'root',
          end_reason: 'incident 42: freezing changes on lab — ünïcode ok',
        },
      },
    ]);
    // Ended once: a second request finds nothing.
    await root.delete(`/api/sessions/${id}`).send({ reason: 'again' }).expect(404);
  });

  it('the owner ends their own session, with or without a reason (ended_by_user)', async () => {
    const dev = await as('dev');
    const withReason = live('dev', 'read');
    await dev.delete(`/api/sessions/${withReason}`).send({ reason: 'done' }).expect(204);
    expect(ends.get(withReason)).toMatchObject({
      reason: 'ended_by_user',
      endedBy: { by: 'dev', reason: 'done' },
    });
    const bare = live('dev', 'read');
    await dev.delete(`/api/sessions/${bare}`).expect(204);
    expect(ends.get(bare)?.reason).toBe('ended_by_user');
    expect(ends.get(bare)?.endedBy).toEqual({ by: 'dev' });
    const empty = live('dev', 'read');
    await dev.delete(`/api/sessions/${empty}`).send({}).expect(204);
    expect(ends.get(empty)?.endedBy).toEqual({ by: 'dev' });
  });

  it('refuses reasons that are not one bounded line of text (400, naming the rule) and ends nothing', async () => {
    const id = live('dev', 'read');
    const root = await as('root');
    const bad: unknown[] = [
      { reason: 'line one\nforged: audit line' },
      { reason: 'carriage\rreturn' },
      { reason: 'tab\there' },
      { reason: 'escape \u001b[31mred\u001b[0m' },
      { reason: 'nul \u0000 byte' },
      { reason: 'c1 \u0085 next line' },
      { reason: 'bidi \u202e txet desrever' },
      { reason: 'isolate \u2066x\u2069' },
      { reason: 'zero\u200bwidth' },
      { reason: 'line\u2028separator' },
      { reason: 'x'.repeat(END_REASON_MAX_CHARS + 1) },
      { reason: 42 },
      { reason: ['a'] },
      { reason: null },
      { reason: 'ok', force: true },
    ];
    for (const body of bad) {
      const res = await root.delete(`/api/sessions/${id}`).send(body as object);
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      expect(res.body).toMatchObject({ error: 'E_BAD_REQUEST' });
      expect((res.body as { message: string }).message).toMatch(
        /reason must be one line|unknown field "force"/,
      );
    }
    const arr = await root
      .delete(`/api/sessions/${id}`)
      .set('content-type', 'application/json')
      .send('["x"]');
    expect(arr.status).toBe(400);
    expect(registry.get(id)?.state).toBe('starting');
    // The longest allowed reason is accepted as is.
    await root
      .delete(`/api/sessions/${id}`)
      .send({ reason: 'y'.repeat(END_REASON_MAX_CHARS) })
      .expect(204);
    expect(ends.get(id)?.endedBy?.reason).toHaveLength(END_REASON_MAX_CHARS);
  });
});
