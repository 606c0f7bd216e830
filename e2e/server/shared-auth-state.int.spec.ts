import 'reflect-metadata';

import { randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { PinoLogger } from 'nestjs-pino';

import { AgentCertificates } from '../../apps/server/src/agents/agent-certificates.service';
import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { RedisCapSlots } from '../../apps/server/src/shared-state/redis-cap-slots';
import { SharedState } from '../../apps/server/src/shared-state/shared-state.service';
import { until } from '../support/wait';
import { closeRedis, connectRedis, redisClient } from '../../apps/server/src/shared-state/redis-client';
import { RedisLoginSessions, TokenSealer } from '../../apps/server/src/auth/redis-login-sessions';
import { RedisRegistrationTokens } from '../../apps/server/src/agents/redis-registration-tokens';
import {
  sharedSlotTransfer,
  RedisTickets,
  TICKET_SWEEP_MS,
} from '../../apps/server/src/terminal/redis-tickets';
import type { Principal, ProviderTokens } from '../../apps/server/src/auth/session-store';
import type { TicketBase } from '../../apps/server/src/terminal/tickets';
import { TestClusterClient } from '../k8s/cluster';
import { devLogin } from '../support/dev-login';
import { signIn, startIdp, type Idp } from '../support/oidc-idp';
import { startRedisServer, type TestRedis } from '../support/redis-server';
import { TerminalClient } from '../support/terminal-client';
import {
  startExecPod,
  sharedRedisReplicaEnv,
  startTestServer,
  testServerConfig,
  writeConfigDir,
  type TestServer,
} from '../support/test-server';

const log = pino({ level: 'silent' });
const alice: Principal = {
  subject: 'alice@example.com',
  email: 'alice@example.com',
  groups: [],
  tier: 'admin',
};

type ShellTicket = TicketBase & { sessionId: string; cluster: string; tier: string };

/**
 * The Redis adapters of tickets, login sessions and registration tokens against a real
 * redis-server: each "replica" is its own client and adapter instance, as separate server
 * processes would be.
 */
describe('auth and terminal state in Redis: tickets, login sessions, registration tokens', () => {
  let redis: TestRedis;
  const clients: Redis[] = [];
  let prefixN = 0;
  const prefix = (): string => `a${++prefixN}:`;

  async function client(): Promise<Redis> {
    const c = redisClient({ url: redis.url });
    await connectRedis(c, redis.url, 10_000);
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    redis = await startRedisServer();
  });

  afterAll(async () => {
    for (const c of clients) await closeRedis(c);
    await redis.stop();
  });

  it('a ticket issued through one replica is redeemed exactly once across three racing for it; the redeemer owns the cap slot', async () => {
    const p = prefix();
    const caps = await Promise.all(
      ['r0', 'r1', 'r2'].map(
        async (r) =>
          new RedisCapSlots('cluster_shell', await client(), p, r, 2, 10, { leaseMs: 30_000 }, log),
      ),
    );
    const tickets = await Promise.all(
      caps.map(
        async (c) =>
          new RedisTickets<ShellTicket>(
            'cluster_shell',
            await client(),
            p,
            sharedSlotTransfer(() => c),
            log,
          ),
      ),
    );
    try {
      for (let round = 0; round < 5; round++) {
        const sessionId = `s-${round}`;
        const slot = await caps[0]?.reserve(alice.subject, 'lab', sessionId);
        if (!slot?.ok) throw new Error('no slot');
        const { ticket } = await (tickets[0] as RedisTickets<ShellTicket>).issue({
          sessionId,
          subject: alice.subject,
          cluster: 'lab',
          tier: 'admin',
          scope: '/api/clusters/lab/shell',
          release: slot.release,
        });
        const answers = await Promise.all(
          tickets.map((t) => t.redeem(ticket, alice.subject, '/api/clusters/lab/shell')),
        );
        const won = answers.flatMap((a, i) => (a === undefined ? [] : [i]));
        expect(won, `round ${round}`).toHaveLength(1);
        const winner = won[0] as number;
        expect(answers[winner]?.sessionId).toBe(sessionId);
        expect(answers[winner]?.tier).toBe('admin');
        // The slot is the redeemer's now (the issuer, when it redeemed itself, kept it).
        expect(caps[winner]?.has(sessionId)).toBe(true);
        expect(await caps[1]?.ids()).toContain(sessionId);
        // Used: nobody redeems it again.
        expect(
          await tickets[winner]?.redeem(ticket, alice.subject, '/api/clusters/lab/shell'),
        ).toBeUndefined();
        answers[winner]?.release();
      }
      // Every slot was released by its redeemer; the issuer's hold leaves them alone.
      await expect.poll(() => caps[0]?.ids(), { timeout: 5_000 }).toEqual([]);
    } finally {
      for (const t of tickets) t.clear();
      for (const c of caps) await c.stop({ release: true });
    }
  });

  it('refuses an expired ticket, another subject or path, and the issuer frees the unused slot after expiry', async () => {
    const p = prefix();
    const [a, b] = [await client(), await client()];
    let released = 0;
    const adopted: string[] = [];
    const transfer = {
      issued: (v: ShellTicket) => v.release,
      adopt: (t: { sessionId: string }) => {
        adopted.push(t.sessionId);
        return Promise.resolve(() => undefined);
      },
    };
    const issuer = new RedisTickets<ShellTicket>('pod_exec', a, p, transfer, log, 300);
    const other = new RedisTickets<ShellTicket>('pod_exec', b, p, transfer, log, 300);
    const value = (sessionId: string): ShellTicket => ({
      sessionId,
      subject: alice.subject,
      cluster: 'lab',
      tier: 'admin',
      scope: '/x',
      release: () => released++,
    });
    const expired = await issuer.issue(value('expired'));
    const wrongSubject = await issuer.issue(value('wrong-subject'));
    const wrongScope = await issuer.issue(value('wrong-scope'));
    expect(await other.redeem(wrongSubject.ticket, 'mallory', '/x')).toBeUndefined();
    expect(await other.redeem(wrongScope.ticket, alice.subject, '/y')).toBeUndefined();
    await new Promise((r) => setTimeout(r, 450));
    expect(await other.redeem(expired.ticket, alice.subject, '/x')).toBeUndefined();
    expect(adopted).toEqual([]);
    // The issuer gives every slot back once the tickets expired (whoever refused them).
    await expect.poll(() => released, { timeout: 300 + TICKET_SWEEP_MS + 2_000 }).toBe(3);
    expect(issuer.size).toBe(0);
    // A refused or garbage ticket never reaches anything.
    expect(await other.redeem('not a ticket', alice.subject, '/x')).toBeUndefined();
  });

  it('a login session created through one replica is valid through another, its tokens sealed at rest, and ends on time', async () => {
    const p = prefix();
    const key = randomBytes(32);
    const opts = { idleMs: 600, absoluteMs: 3_000, max: 100 };
    const a = new RedisLoginSessions(await client(), p, new TokenSealer(key), opts, log);
    const b = new RedisLoginSessions(await client(), p, new TokenSealer(key), opts, log);
    const tokens: ProviderTokens = {
      refreshToken: 'refresh-secret-xyz',
      idToken: 'id-token-secret',
      expiresAt: Date.now() + 3_600_000,
    };
    const id = await a.create(alice, tokens);
    expect(b.get(id)).toBeUndefined(); // not read yet on b
    await b.load(id);
    expect(b.get(id)).toEqual(alice);
    expect(await b.current(id, () => Promise.reject(new Error('not due')))).toEqual(alice);
    expect(b.expiresAt(id)).toBe(a.expiresAt(id));
    // At rest: neither the cookie value nor a provider token appears in Redis.
    const raw = await (
      await client()
    ).eval(
      `local out = {} for _, k in ipairs(redis.call('KEYS', ARGV[1])) do if redis.call('TYPE', k).ok == 'hash' then table.insert(out, k) table.insert(out, redis.call('HGET', k, 'd')) else table.insert(out, k) end end return out`,
      0,
      `${p}*`,
    );
    const dump = JSON.stringify(raw);
    expect(dump).toContain('alice@example.com');
    expect(dump).not.toContain(id);
    expect(dump).not.toContain('refresh-secret-xyz');
    expect(dump).not.toContain('id-token-secret');
    // Idle expiry: activity through b keeps it; silence ends it everywhere.
    await new Promise((r) => setTimeout(r, 400));
    await a.load(id);
    expect(a.get(id)).toEqual(alice);
    await new Promise((r) => setTimeout(r, 400));
    await b.load(id);
    expect(b.get(id)).toEqual(alice); // 400 ms after a's read: still inside the idle window
    await new Promise((r) => setTimeout(r, 700));
    await a.load(id);
    expect(a.get(id)).toBeUndefined();
    // Absolute expiry, however active.
    const busy = await a.create(alice);
    const end = Date.now() + 3_200;
    while (Date.now() < end) {
      await b.load(busy);
      await new Promise((r) => setTimeout(r, 200));
    }
    await b.load(busy);
    expect(b.get(busy)).toBeUndefined();
    // Sign-out through one replica ends it on the other; the tokens come back for the logout.
    const third = await a.create(alice, tokens);
    await b.load(third);
    expect(await b.delete(third)).toEqual(tokens);
    await a.load(third);
    expect(a.get(third)).toBeUndefined();
    expect(await a.delete(third)).toBeUndefined();
  });

  it('refreshes a due session once across replicas and keeps its bounds (per person, whole table)', async () => {
    const p = prefix();
    const key = randomBytes(32);
    const opts = { idleMs: 60_000, absoluteMs: 600_000, max: 3, maxPerSubject: 2 };
    const a = new RedisLoginSessions(await client(), p, new TokenSealer(key), opts, log);
    const b = new RedisLoginSessions(await client(), p, new TokenSealer(key), opts, log);
    const id = await a.create(alice, { refreshToken: 'r1', expiresAt: Date.now() - 1_000 });
    let refreshes = 0;
    const seen: (string | undefined)[] = [];
    const refresh = async (t: ProviderTokens): Promise<{ principal: Principal; tokens: ProviderTokens }> => {
      refreshes++;
      seen.push(t.refreshToken);
      await new Promise((r) => setTimeout(r, 200));
      return {
        principal: { ...alice, tier: 'read' },
        tokens: { refreshToken: 'r2', expiresAt: Date.now() + 3_600_000 },
      };
    };
    await Promise.all([a.load(id), b.load(id)]);
    const answers = await Promise.all([
      a.current(id, refresh),
      b.current(id, refresh),
      a.current(id, refresh),
    ]);
    expect(refreshes).toBe(1);
    expect(seen).toEqual(['r1']); // the refresh token, opened on whichever replica refreshed
    for (const x of answers) expect(x?.subject).toBe(alice.subject);
    expect((await b.current(id, refresh))?.tier).toBe('read');
    expect(b.refreshDue(id)).toBe(false);
    // One person: the third sign-in ends their oldest.
    const second = await b.create(alice);
    const third = await a.create(alice);
    await b.load(id);
    expect(b.get(id)).toBeUndefined();
    await b.load(second);
    expect(b.get(second)).toBeDefined();
    // The table: full of live sessions, a new sign-in is refused with 503 (nobody pushed out).
    await a.create({ ...alice, subject: 'bob' });
    await expect(b.create({ ...alice, subject: 'carol' })).rejects.toMatchObject({ code: 'E_UNAVAILABLE' });
    await a.load(third);
    expect(a.get(third)).toBeDefined();
  });

  it('a revocation through one replica drops the agent on the replica holding its tunnel', async () => {
    // Two replicas over one record store (the data directory here; the CA Secret's neighbour in a cluster).
    const dir = mkdtempSync(join(tmpdir(), 'periscope-identity-news-'));
    writeFileSync(join(dir, 'auth.yaml'), 'dev:\n  users:\n    - { subject: alice, groups: [a] }\n');
    writeFileSync(join(dir, 'clusters.yaml'), 'clusters:\n  - { name: edge, backend: agent }\n');
    const p = prefix();
    const replicas = await Promise.all(
      ['id-a', 'id-b'].map(async (replica) => {
        const config = loadServerConfig(
          {
            PERISCOPE_AUTH_MODE: 'dev',
            PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
            PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
            PERISCOPE_DATA_DIR: join(dir, 'data'),
            PERISCOPE_AGENT_TUNNEL_URL: 'https://tunnel.example:8443',
            PERISCOPE_REDIS_URL: redis.url,
            PERISCOPE_REPLICA_SECRET: 'replica-secret-shared-by-the-test-replicas',
            PERISCOPE_REDIS_KEY_PREFIX: p,
            PERISCOPE_REPLICA_ID: replica,
          },
          (f) => readFileSync(f, 'utf8'),
        );
        const quiet = { info: () => undefined, warn: () => undefined, logger: log } as unknown as PinoLogger;
        const shared = new SharedState(config, quiet);
        await shared.onModuleInit();
        const certs = new AgentCertificates(config, shared);
        await certs.onModuleInit();
        const calls: string[] = [];
        certs.connectThrough({
          supersede: (c) => {
            calls.push(`supersede ${c}`);
            return true;
          },
          revoke: (c) => {
            calls.push(`revoke ${c}`);
            return true;
          },
        });
        return { shared, certs, calls };
      }),
    );
    const [a, b] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];
    try {
      await a.certs.revoke('edge', 'admin');
      // a dropped its own link itself; b hears the news, reads the records again, and revokes.
      expect(a.calls).toEqual(['revoke edge']);
      await until('b revokes the agent', () => b.calls.includes('revoke edge'), 10_000);
      expect(b.certs.identities?.record('edge')?.current).toBeNull();
    } finally {
      for (const r of replicas) {
        await r.certs.onApplicationShutdown();
        await r.shared.onApplicationShutdown();
      }
    }
  });

  it('a registration token consumed concurrently from two replicas succeeds exactly once', async () => {
    const p = prefix();
    const a = new RedisRegistrationTokens(await client(), p);
    const b = new RedisRegistrationTokens(await client(), p);
    for (let i = 0; i < 10; i++) {
      const { token, expiresAt } = await a.mint('lab');
      expect(expiresAt.getTime()).toBeGreaterThan(Date.now() + 14 * 60_000);
      const answers = await Promise.all([
        a.redeem(token, 'lab'),
        b.redeem(token, 'lab'),
        b.redeem(token, 'lab'),
      ]);
      expect(answers.filter((x) => x.ok)).toHaveLength(1);
      expect(answers.filter((x) => !x.ok)).toEqual([
        { ok: false, reason: 'used' },
        { ok: false, reason: 'used' },
      ]);
    }
    const wrong = await b.mint('lab');
    expect(await a.redeem(wrong.token, 'other')).toEqual({ ok: false, reason: 'wrong_cluster' });
    expect(await a.redeem(wrong.token, 'lab')).toEqual({ ok: false, reason: 'used' });
    expect(await a.redeem('psc_unknown', 'lab')).toEqual({ ok: false, reason: 'unknown' });
    const short = new RedisRegistrationTokens(await client(), p, 100);
    const soon = await short.mint('lab');
    await new Promise((r) => setTimeout(r, 250));
    expect(await b.redeem(soon.token, 'lab')).toEqual({ ok: false, reason: 'expired' });
    const bounded = new RedisRegistrationTokens(await client(), prefix(), 60_000, 2);
    await bounded.mint('lab');
    await bounded.mint('lab');
    await expect(bounded.mint('lab')).rejects.toThrow(/too many live registration tokens \(2\)/);
  });
});

const ORIGIN = 'http://localhost:8080';

/**
 * Two real server instances sharing one redis-server and the local cluster: a dev sign-in through
 * A works on B (and signing out on B ends it on A); a pod-exec ticket from A opens the terminal
 * socket on B (a real exec on the real apiserver), once.
 */
describe('two server replicas sharing Redis: sign-ins and terminal tickets across replicas', () => {
  let redis: TestRedis;
  const servers: TestServer[] = [];
  const cluster = new TestClusterClient(inject('cluster'));
  const ns = `shared-auth-${Date.now().toString(36)}`;

  beforeAll(async () => {
    redis = await startRedisServer();
    await startExecPod(cluster, ns, [{ tier: 'admin', role: 'admin', name: 'admin-tier' }]);
    for (const replica of ['auth-a', 'auth-b']) {
      const dir = writeConfigDir(`shared-auth-${replica}`, inject('cluster').adminKubeconfig, {
        groupTiers: { admins: 'admin' },
        users: [{ subject: 'alice@example.com', groups: ['admins'] }],
      });
      servers.push(
        await startTestServer(testServerConfig(dir, sharedRedisReplicaEnv(redis.url, replica, ORIGIN))),
      );
    }
  }, 120_000);

  afterAll(async () => {
    for (const s of servers) await s.stop();
    await redis.stop();
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
  });

  const whoami = async (base: string, cookie: string): Promise<number> =>
    (await fetch(`${base}/api/auth/whoami`, { headers: { cookie } })).status;

  it('a sign-in through A is valid on B; signing out on B ends it on A', async () => {
    const [a, b] = servers as [TestServer, TestServer];
    const cookie = await devLogin(a.base, 'alice@example.com');
    expect(await whoami(b.base, cookie)).toBe(200);
    const me = (await (await fetch(`${b.base}/api/auth/whoami`, { headers: { cookie } })).json()) as Record<
      string,
      unknown
    >;
    expect(me['subject']).toBe('alice@example.com');
    expect(me['tier']).toBe('admin');
    expect(await whoami(a.base, cookie)).toBe(200);
    const out = await fetch(`${b.base}/api/auth/logout`, {
      method: 'POST',
      headers: { cookie, origin: ORIGIN },
    });
    expect(out.status).toBe(200);
    expect(await whoami(a.base, cookie)).toBe(401);
    expect(await whoami(b.base, cookie)).toBe(401);
  });

  it('a pod-exec ticket from A opens the terminal on B (echo through the real apiserver), exactly once', async () => {
    const [a, b] = servers as [TestServer, TestServer];
    const cookie = await devLogin(a.base, 'alice@example.com');
    const headers = { cookie, origin: ORIGIN };
    const res = await fetch(`${a.base}/api/clusters/lab/pods/${ns}/app/exec/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ container: 'main' }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { socketPath } = (await res.json()) as { socketPath: string };
    const onB = new TerminalClient(`${b.base.replace('http', 'ws')}${socketPath}`, headers);
    await onB.opened;
    onB.type('echo "over $((40 + 2)) replicas"\n');
    await onB.waitText('the exec on B', /over 42 replicas/);
    // The same ticket again, on A (its issuer) or B: used.
    for (const s of [a, b]) {
      const again = new TerminalClient(`${s.base.replace('http', 'ws')}${socketPath}`, headers);
      await expect(again.opened).rejects.toThrow(/HTTP 401/);
    }
    onB.type('exit\n');
    await onB.closed;
  }, 60_000);

  it("signing out through A ends that sign-in's terminal on B with E_SIGNED_OUT", async () => {
    const [a, b] = servers as [TestServer, TestServer];
    const cookie = await devLogin(b.base, 'alice@example.com');
    const other = await devLogin(b.base, 'alice@example.com');
    const open = async (c: string): Promise<TerminalClient> => {
      const res = await fetch(`${b.base}/api/clusters/lab/pods/${ns}/app/exec/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie: c, origin: ORIGIN },
        body: JSON.stringify({ container: 'main' }),
      });
      expect(res.status, await res.clone().text()).toBe(201);
      const { socketPath } = (await res.json()) as { socketPath: string };
      const t = new TerminalClient(`${b.base.replace('http', 'ws')}${socketPath}`, {
        cookie: c,
        origin: ORIGIN,
      });
      await t.opened;
      t.type('echo ready\n');
      await t.waitText('the exec on B', /ready/);
      return t;
    };
    const [mine, kept] = [await open(cookie), await open(other)];
    const out = await fetch(`${a.base}/api/auth/logout`, {
      method: 'POST',
      headers: { cookie, origin: ORIGIN },
    });
    expect(out.status).toBe(200);
    await mine.closed;
    expect(mine.frames).toContainEqual(expect.objectContaining({ type: 'error', code: 'E_SIGNED_OUT' }));
    expect(mine.frames).toContainEqual({ type: 'closed', reason: 'signed_out' });
    // Another sign-in of the same person keeps its terminal.
    kept.type('echo still here\n');
    await kept.waitText('the other sign-in', /still here/);
    expect(kept.closeCode).toBeUndefined();
    kept.type('exit\n');
    await kept.closed;
  }, 60_000);
});

/**
 * A plain HTTP balancer on loopback that sends each request to the other replica than the one
 * before (strict alternation), and remembers where each path went.
 */
async function alternatingBalancer(): Promise<{
  base: string;
  backends: string[];
  routed: { path: string; to: number }[];
  stop(): Promise<void>;
}> {
  const backends: string[] = [];
  const routed: { path: string; to: number }[] = [];
  let n = 0;
  const server: Server = createServer((req, res) => {
    const to = n++ % backends.length;
    const target = new URL(backends[to] ?? '');
    // Bounded: the log only serves the assertions of one sign-in.
    if (routed.length < 1000) routed.push({ path: (req.url ?? '').split('?')[0] ?? '', to });
    const up = request(
      { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`,
    backends,
    routed,
    stop: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => {
          r();
        });
      }),
  };
}

/**
 * OpenID sign-in through two replicas behind a balancer that alternates: the sign-in starts on
 * one (its state, nonce and PKCE verifier sealed in the browser's cookie under the shared
 * PERISCOPE_SESSION_KEY) and finishes on the other; the session then works on both.
 */
describe('two server replicas sharing Redis: an OpenID sign-in started on one finishes on the other', () => {
  let redis: TestRedis;
  let idp: Idp;
  let lb: Awaited<ReturnType<typeof alternatingBalancer>>;
  const servers: TestServer[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
    lb = await alternatingBalancer();
    idp = await startIdp(lb.base, { alice: { email: 'alice@example.com', groups: ['sre'] } });
    const sessionKey = randomBytes(32).toString('base64');
    for (const replica of ['oidc-a', 'oidc-b']) {
      const dir = writeConfigDir(`shared-oidc-${replica}`, inject('cluster').adminKubeconfig, { oidc: idp });
      servers.push(
        await startTestServer(
          testServerConfig(dir, {
            ...sharedRedisReplicaEnv(redis.url, replica, lb.base),
            PERISCOPE_AUTH_MODE: 'oidc',
            PERISCOPE_OIDC_CLIENT_SECRET: idp.clientSecret,
            PERISCOPE_SESSION_KEY: sessionKey,
          }),
        ),
      );
      lb.backends.push((servers.at(-1) as TestServer).base);
    }
  }, 120_000);

  afterAll(async () => {
    for (const s of servers) await s.stop();
    await lb.stop();
    await idp.stop();
    await redis.stop();
  });

  it('signs in across the replicas and the session answers on both', async () => {
    const b = await signIn(lb.base, idp, 'alice', '/');
    const login = lb.routed.find((r) => r.path === '/api/auth/login');
    const callback = lb.routed.find((r) => r.path === '/api/auth/callback');
    expect(login).toBeDefined();
    expect(callback).toBeDefined();
    expect(callback?.to).not.toBe(login?.to);
    expect(b.jar(lb.base).has('periscope_session')).toBe(true);
    for (const s of servers) {
      const res = await fetch(`${s.base}/api/auth/whoami`, { headers: { cookie: b.cookie(lb.base) } });
      expect(res.status).toBe(200);
      const me = (await res.json()) as Record<string, unknown>;
      expect(me['subject']).toBe('alice');
      expect(me['tier']).toBe('maintain');
    }
  });
});
