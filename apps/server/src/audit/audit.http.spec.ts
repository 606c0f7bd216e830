import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { loadServerConfig } from '../config/server-config';
import { createServerApp } from '../server-app';
import { AuditStore } from './audit-store';
import type { AuditEventView } from './audit.controller';

interface Page {
  events: AuditEventView[];
  nextBefore: number | null;
}

describe('GET /api/audit', () => {
  let app: NestExpressApplication;
  const stdout: string[] = [];

  beforeAll(async () => {
    // Capture (and silence) stdout: audit lines go there.
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      return true;
    });
    const dir = mkdtempSync(join(tmpdir(), 'periscope-audit-http-'));
    writeFileSync(
      join(dir, 'auth.yaml'),
      [
        'authorization:',
        '  mode: tier',
        '  groupTiers: { admins: admin, devs: read }',
        '  auditAdminGroups: [sec-audit]',
        'dev:',
        '  users:',
        '    - { subject: root, groups: [admins] }',
        '    - { subject: dev, groups: [devs] }',
        '    - { subject: auditor, groups: [devs, sec-audit] }',
        '',
      ].join('\n'),
    );
    app = await createServerApp(
      loadServerConfig(
        {
          PERISCOPE_AUTH_MODE: 'dev',
          PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
          PERISCOPE_DATA_DIR: join(dir, 'data'),
          PERISCOPE_LOG_LEVEL: 'error',
        },
        (p) => readFileSync(p, 'utf8'),
      ),
    );
    await app.listen(0, '127.0.0.1');
    const store = app.get(AuditStore);
    for (const [actor, sessionId] of [
      ['root', 'r1'],
      ['dev', 'd1'],
      ['root', 'r2'],
    ] as const) {
      store.write({
        verb: 'cluster_shell_open',
        actor,
        cluster: 'lab',
        sessionId,
        body: { session_id: sessionId },
      });
      store.write({
        verb: 'cluster_shell_close',
        actor,
        cluster: 'lab',
        sessionId,
        body: {
          session_id: sessionId,
          close_reason: sessionId === 'r2' ? 'heartbeat_timeout' : 'exit',
          exit_code: null,
        },
      });
    }
  });

  afterAll(async () => {
    await app.close();
    vi.restoreAllMocks();
  });

  async function as(subject: string): Promise<ReturnType<typeof request.agent>> {
    const agent = request.agent(app.getHttpServer());
    await agent.post('/api/auth/dev-login').send({ subject }).expect(204);
    return agent;
  }

  it('wrote every seeded event to stdout as an audit line', () => {
    const lines = stdout
      .join('')
      .split('\n')
      .filter((l) => l.startsWith('{"audit":true'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.actor, l.session_id, l.verb])).toEqual([
      ['root', 'r1', 'cluster_shell_open'],
      ['root', 'r1', 'cluster_shell_close'],
      ['dev', 'd1', 'cluster_shell_open'],
      ['dev', 'd1', 'cluster_shell_close'],
      ['root', 'r2', 'cluster_shell_open'],
      ['root', 'r2', 'cluster_shell_close'],
    ]);
  });

  it('answers 401 without a session', async () => {
    const res = await request(app.getHttpServer()).get('/api/audit').expect(401);
    expect(res.body).toMatchObject({ error: 'E_AUTH' });
  });

  it('shows an admin everything, newest first, with paging and filters', async () => {
    const root = await as('root');
    const all = (await root.get('/api/audit').expect(200)).body as Page;
    expect(all.events.map((e) => e.sessionId)).toEqual(['r2', 'r2', 'd1', 'd1', 'r1', 'r1']);
    expect(all.nextBefore).toBeNull();
    expect(all.events[0]).toEqual({
      id: 6,
      time: expect.any(String) as string,
      verb: 'cluster_shell_close',
      actor: 'root',
      cluster: 'lab',
      sessionId: 'r2',
      outcome: 'error',
      body: { session_id: 'r2', close_reason: 'heartbeat_timeout', exit_code: null },
    });

    const p1 = (await root.get('/api/audit?limit=4').expect(200)).body as Page;
    expect(p1.events.map((e) => e.id)).toEqual([6, 5, 4, 3]);
    expect(p1.nextBefore).toBe(3);
    const p2 = (await root.get(`/api/audit?limit=4&before=${p1.nextBefore!}`).expect(200)).body as Page;
    expect(p2.events.map((e) => e.id)).toEqual([2, 1]);
    expect(p2.nextBefore).toBeNull();

    const errors = (await root.get('/api/audit?outcome=error').expect(200)).body as Page;
    expect(errors.events.map((e) => e.id)).toEqual([6]);
    const devs = (await root.get('/api/audit?actor=dev&verb=cluster_shell_open').expect(200)).body as Page;
    expect(devs.events.map((e) => e.id)).toEqual([3]);
    const future = (await root.get('/api/audit?since=2999-01-01').expect(200)).body as Page;
    expect(future.events).toEqual([]);
  });

  it('shows a non-auditor only their own events, whatever actor they ask for', async () => {
    const dev = await as('dev');
    for (const path of ['/api/audit', '/api/audit?actor=root', '/api/audit?actor=dev']) {
      const page = (await dev.get(path).expect(200)).body as Page;
      expect(page.events.map((e) => [e.actor, e.id])).toEqual([
        ['dev', 4],
        ['dev', 3],
      ]);
    }
    expect(((await dev.get('/api/audit?session_id=r1').expect(200)).body as Page).events).toEqual([]);
  });

  it('shows a member of auditAdminGroups everything', async () => {
    const auditor = await as('auditor');
    const page = (await auditor.get('/api/audit?actor=root').expect(200)).body as Page;
    expect(page.events.map((e) => e.id)).toEqual([6, 5, 2, 1]);
  });

  it('answers 400 E_BAD_REQUEST with a clear message on bad input', async () => {
    const dev = await as('dev');
    for (const [query, message] of [
      ['limit=0', /^limit must be an integer from 1 to 500/],
      ['limit=abc', /^limit must be an integer/],
      ['before=x', /^before must be an integer/],
      ['outcome=bad', /^outcome must be ok or error/],
      ['since=yesterday', /^since must be an ISO 8601 time/],
      ['until=2025-01-01T00:00:00', /^until must be an ISO 8601 time/],
      ['since=2025-02-01&until=2025-01-01', /is after until/],
      ['verb=a&verb=b', /^verb may be given once/],
      ['sessionId=x', /^unknown query parameter "sessionId"/],
    ] as const) {
      const res = await dev.get(`/api/audit?${query}`).expect(400);
      expect(res.body).toMatchObject({ error: 'E_BAD_REQUEST' });
      expect((res.body as { message: string }).message).toMatch(message);
    }
  });
});
