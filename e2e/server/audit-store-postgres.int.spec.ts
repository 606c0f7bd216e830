/**
 * The audit store on a real PostgreSQL (a throwaway cluster from Debian's packages, on loopback):
 * every shared audit store case (the same ones the SQLite store passes), the versioned migrations
 * with replicas starting together, exactly-once closes, and the audit API answering the same from
 * two server instances on one database.
 */
import 'reflect-metadata';

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { AuditLog } from '../../apps/server/src/audit/audit-log';
import {
  auditLogCases,
  closeEvent,
  openEvent,
  type AuditLogAdapter,
} from '../../apps/server/src/audit/audit-log.test-cases';
import { postgresUrl } from '../../apps/server/src/audit/audit.module';
import { PostgresAuditStore, redactDatabaseUrl } from '../../apps/server/src/audit/postgres-audit-store';
import { AUDIT_MIGRATIONS } from '../../apps/server/src/audit/postgres-migrations';
import { configForLog, loadServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import { devLogin } from '../support/dev-login';
import { startPostgres, type PostgresServer } from '../support/postgres-server';

let started: PostgresServer | undefined;
const pg = {
  get server(): PostgresServer {
    if (!started) throw new Error('PostgreSQL did not start (see the beforeAll error)');
    return started;
  },
};
let databases = 0;
const newDatabase = (): Promise<string> => pg.server.createDatabase(`audit_${process.pid}_${++databases}`);

beforeAll(async () => {
  started = await startPostgres({ startTimeoutMs: 90_000 });
});

afterAll(async () => {
  await started?.stop();
});

const adapter: AuditLogAdapter = {
  newDatabase,
  open: (url, options) => PostgresAuditStore.open(url, options),
};

describe('audit store on PostgreSQL', () => {
  describe('shared audit store cases', () => {
    auditLogCases(adapter);
  });

  async function rows<T extends Record<string, unknown>>(url: string, sql: string): Promise<T[]> {
    const c = new Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
    await c.connect();
    try {
      return (await c.query<T>(sql)).rows;
    } finally {
      await c.end();
    }
  }

  it('migrates once when replicas start together, and a restart applies nothing', async () => {
    const url = await newDatabase();
    const all = AUDIT_MIGRATIONS.map((m) => m.version);
    const quiet = { sink: (): void => undefined };
    const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresAuditStore.open(url, quiet)));
    try {
      const applied = stores.map((s) => [...s.appliedMigrations]);
      // One replica applied every migration; the others waited on the lock and found the work done.
      expect(applied.filter((a) => a.length > 0)).toEqual([all]);
      expect(applied.flat().sort()).toEqual(all);
      const recorded = await rows<{ version: number; name: string }>(
        url,
        'SELECT version, name FROM schema_migrations ORDER BY version',
      );
      expect(recorded).toEqual(AUDIT_MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
      // Every store works on the one schema.
      await stores[0]!.write(openEvent('alice', 's1'));
      expect(await stores[3]!.count()).toBe(1);
    } finally {
      for (const s of stores) await s.close();
    }
    const again = await PostgresAuditStore.open(url);
    expect(again.appliedMigrations).toEqual([]);
    await again.close();
  });

  it('refuses a database migrated by a newer server, saying what to do', async () => {
    const url = await newDatabase();
    await (await PostgresAuditStore.open(url)).close();
    await rows(url, `INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')`);
    await expect(PostgresAuditStore.open(url)).rejects.toThrow(
      /schema version 999, newer than this server knows .*run a server at least as new/,
    );
  });

  it('holds one close per session: a second plain write of a close is refused by the unique index', async () => {
    const store = await PostgresAuditStore.open(await newDatabase(), { sink: () => undefined });
    try {
      await store.write(openEvent('alice', 's1'));
      await store.write(closeEvent('alice', 's1', 'exit'));
      await expect(store.write(closeEvent('alice', 's1', 'replica_lost'))).rejects.toThrow(
        /audit_events_one_close/,
      );
      // Events without a session id (agent_revoke, denied opens) are not sessions' closes.
      await store.write({ ...closeEvent('root', '', 'exit'), verb: 'x_close' });
      await store.write({ ...closeEvent('root', '', 'exit'), verb: 'x_close' });
      expect(await store.count()).toBe(4);
    } finally {
      await store.close();
    }
  });

  it('stores a NUL in an envelope column as U+FFFD (PostgreSQL text refuses U+0000)', async () => {
    const store = await PostgresAuditStore.open(await newDatabase(), { sink: () => undefined });
    try {
      await store.write({ ...openEvent('al\0ice', 's1', 'c\0'), body: { note: 'a\0b' } });
      const [e] = (await store.query({ limit: 1 })).events;
      expect(e).toMatchObject({ actor: 'al\uFFFDice', cluster: 'c\uFFFD', body: { note: 'a\0b' } });
    } finally {
      await store.close();
    }
  });

  it('keeps one prune at a time across replicas', async () => {
    const url = await newDatabase();
    const clock = { now: Date.parse('2025-03-01T00:00:00.000Z') };
    const a = await PostgresAuditStore.open(url, { sink: () => undefined, now: () => clock.now });
    const b = await PostgresAuditStore.open(url, { sink: () => undefined, now: () => clock.now });
    try {
      for (let i = 0; i < 2500; i++) await a.write(openEvent('a', `s${i}`));
      clock.now += 2 * 86_400_000;
      const policy = { retentionDays: 1, maxBytes: 1024 ** 3 };
      const [ra, rb] = await Promise.all([a.prune(policy), b.prune(policy)]);
      // One replica pruned everything; the other found the lock held (or nothing left) and deleted nothing.
      expect([ra.deletedByAge, rb.deletedByAge].sort((x, y) => x - y)).toEqual([0, 2500]);
      expect(await a.count()).toBe(0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('never shows the password: redacted URLs, the connection error, the logged configuration', async () => {
    const url = pg.server.urlOf('postgres');
    const password = new URL(url).password;
    expect(password.length).toBeGreaterThan(4);
    expect(redactDatabaseUrl(url)).not.toContain(password);
    expect(redactDatabaseUrl(url)).toContain('***@127.0.0.1');
    const wrong = new URL(url);
    wrong.password = 'not-the-password-4711';
    const err = await PostgresAuditStore.open(wrong.toString(), { connectTimeoutMs: 5_000 }).then(
      () => new Error('connected with a wrong password'),
      (e: unknown) => e as Error,
    );
    expect(err.message).toMatch(
      /cannot reach the audit database at postgres:\/\/periscope:\*\*\*@127\.0\.0\.1/,
    );
    expect(err.message).toMatch(/PERISCOPE_DATABASE_URL/);
    expect(err.message).not.toContain('not-the-password-4711');

    const dir = mkdtempSync(join(tmpdir(), 'periscope-audit-pg-config-'));
    writeFileSync(join(dir, 'auth.yaml'), 'dev:\n  users:\n    - { subject: root, groups: [admins] }\n');
    const config = loadServerConfig(
      {
        PERISCOPE_DATABASE_URL: url,
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_DATA_DIR: join(dir, 'data'),
      },
      (p) => readFileSync(p, 'utf8'),
    );
    expect(config.audit.postgres?.url).not.toContain(password);
    expect(postgresUrl(config.audit.postgres!)).toBe(new URL(url).toString());
    expect(JSON.stringify(configForLog(config))).not.toContain(password);
  });
});

describe('the audit API on two server replicas sharing one PostgreSQL', () => {
  const apps: NestExpressApplication[] = [];
  const stdout: string[] = [];
  let url: string;

  beforeAll(async () => {
    // Capture (and silence) stdout: audit lines and logs go there.
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      return true;
    });
    url = await newDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'periscope-audit-pg-'));
    writeFileSync(
      join(dir, 'auth.yaml'),
      [
        'authorization:',
        '  mode: tier',
        '  groupTiers: { admins: admin, devs: read }',
        'dev:',
        '  users:',
        '    - { subject: root, groups: [admins] }',
        '    - { subject: dev, groups: [devs] }',
        '',
      ].join('\n'),
    );
    // Two replicas start together on one database (each migrates, once between them).
    const started = await Promise.all(
      ['a', 'b'].map((replica) =>
        createServerApp(
          loadServerConfig(
            {
              PERISCOPE_AUTH_MODE: 'dev',
              PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
              PERISCOPE_DATA_DIR: join(dir, `data-${replica}`),
              PERISCOPE_LOG_LEVEL: 'info',
              PERISCOPE_METRICS_PORT: '0',
              PERISCOPE_DATABASE_URL: url,
            },
            (p) => readFileSync(p, 'utf8'),
          ),
        ),
      ),
    );
    for (const app of started) {
      apps.push(app);
      await app.listen(0, '127.0.0.1');
    }
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
    vi.restoreAllMocks();
  });

  async function get(app: NestExpressApplication, subject: string, path: string): Promise<unknown> {
    const address = app.getHttpServer().address() as AddressInfo;
    const base = `http://127.0.0.1:${address.port}`;
    const cookie = await devLogin(base, subject);
    const res = await fetch(`${base}${path}`, { headers: { cookie } });
    expect(res.status).toBe(200);
    return res.json();
  }

  it('answers the same from either replica: a record written through one is read through the other', async () => {
    const [a, b] = [apps[0]!, apps[1]!];
    await a.get(AuditLog).write(openEvent('dev', 'x1', 'lab'));
    await b.get(AuditLog).write({ ...openEvent('root', 'x2', 'lab'), verb: 'session_end_request' });
    await a.get(AuditLog).writeOnce(closeEvent('dev', 'x1', 'exit'));
    // the same close noticed by the other replica: a no-op
    expect(await b.get(AuditLog).writeOnce(closeEvent('dev', 'x1', 'replica_lost'))).toBeUndefined();

    const fromA = await get(a, 'root', '/api/audit');
    const fromB = await get(b, 'root', '/api/audit');
    expect(fromB).toEqual(fromA);
    expect(
      (fromA as { events: { sessionId: string; verb: string }[] }).events.map((e) => [e.sessionId, e.verb]),
    ).toEqual([
      ['x1', 'cluster_shell_close'],
      ['x2', 'session_end_request'],
      ['x1', 'cluster_shell_open'],
    ]);
    // The scope rule holds on either replica: dev sees only their own events.
    const devB = (await get(b, 'dev', '/api/audit')) as { events: { actor: string }[] };
    expect(devB.events.map((e) => e.actor)).toEqual(['dev', 'dev']);
    const paged = (await get(b, 'root', '/api/audit?limit=2')) as { nextBefore: number | null };
    const rest = (await get(a, 'root', `/api/audit?limit=2&before=${paged.nextBefore}`)) as {
      events: { sessionId: string }[];
    };
    expect(rest.events.map((e) => e.sessionId)).toEqual(['x1']);
  });

  it('said which store it uses, without the password', () => {
    const out = stdout.join('');
    const password = new URL(url).password;
    expect(out).toContain('audit store: PostgreSQL');
    expect(out).not.toContain(password);
  });
});
