import type { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import type { CapOutcome } from '../../apps/server/src/shared-state/cap-slots';
import { ShellAdmission } from '../../apps/server/src/cluster-shell/shell-admission.service';
import { RedisCapSlots } from '../../apps/server/src/shared-state/redis-cap-slots';
import { closeRedis, connectRedis, redisClient } from '../../apps/server/src/shared-state/redis-client';
import { RedisLeases, RedisLock, RedisOwnership } from '../../apps/server/src/shared-state/redis-leases';
import { SharedState } from '../../apps/server/src/shared-state/shared-state.service';
import { TestClusterClient } from '../k8s/cluster';
import { devLogin } from '../support/dev-login';
import { startRedisServer, type TestRedis } from '../support/redis-server';
import { startTestServer, testServerConfig, writeConfigDir, type TestServer } from '../support/test-server';
import { until } from '../support/wait';

const log = pino({ level: 'silent' });
/** A short lease keeps the expiry tests short; renewals three times per lease. */
const SHORT = { leaseMs: 2_000, renewEveryMs: 400 };
const LONG = { leaseMs: 30_000 };
const SHELL_NAMESPACE = 'periscope-shared-state';

/**
 * The Redis adapters of the shared-state ports against a real redis-server: each "replica" is its
 * own client and adapter instance, as separate server processes would be.
 */
describe('shared state in Redis: cap slots, ownership, the reaper lock', () => {
  let redis: TestRedis;
  const clients: Redis[] = [];
  const stoppers: (() => Promise<void>)[] = [];
  let prefixN = 0;

  /** A fresh key prefix per test: tests never see each other's keys. */
  const prefix = (): string => `t${++prefixN}:`;

  async function client(): Promise<Redis> {
    const c = redisClient({ url: redis.url });
    await connectRedis(c, redis.url, 10_000);
    clients.push(c);
    return c;
  }

  async function caps(
    p: string,
    replica: string,
    limits: { perUser: number; perCluster: number },
    timing = LONG,
  ): Promise<RedisCapSlots> {
    const slots = new RedisCapSlots(
      'cluster_shell',
      await client(),
      p,
      replica,
      limits.perUser,
      limits.perCluster,
      timing,
      log,
    );
    stoppers.push(() => slots.stop({ release: false }));
    return slots;
  }

  beforeAll(async () => {
    redis = await startRedisServer();
  });

  afterAll(async () => {
    for (const s of stoppers) await s();
    for (const c of clients) await closeRedis(c);
    await redis.stop();
  });

  it('30 concurrent reservations over three replicas admit exactly the caps (2 per user, 10 per cluster)', async () => {
    const p = prefix();
    const replicas = await Promise.all(
      ['r1', 'r2', 'r3'].map((r) => caps(p, r, { perUser: 2, perCluster: 10 })),
    );
    // One user, 30 opens on three clusters: exactly 2.
    const one = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        replicas[i % 3]!.reserve('alice', ['a', 'b', 'c'][i % 3]!, `alice-${i}`),
      ),
    );
    expect(one.filter((r) => r.ok)).toHaveLength(2);
    for (const r of one.filter((x) => !x.ok)) expect(r).toMatchObject({ ok: false, cap: 'user', limit: 2 });
    // 30 opens by 10 users (3 each) on one cluster: exactly 10, nobody above 2.
    const users = Array.from({ length: 10 }, (_, u) => `user${u}`);
    const many = await Promise.all(
      Array.from({ length: 30 }, (_, i) => replicas[i % 3]!.reserve(users[i % 10]!, 'lab', `lab-${i}`)),
    );
    const admitted = many.flatMap((r, i) => (r.ok ? [i] : []));
    expect(admitted).toHaveLength(10);
    const perUser = users.map((_, u) => admitted.filter((i) => i % 10 === u).length);
    expect(Math.max(...perUser)).toBeLessThanOrEqual(2);
    for (const r of many.filter((x) => !x.ok))
      expect(['user', 'cluster']).toContain((r as { cap: string }).cap);
    expect(many.some((r) => !r.ok && r.cap === 'cluster' && r.limit === 10 && r.activeSessions === 10)).toBe(
      true,
    );
    // Every replica sees the same 12 slots; each holds its own.
    const expected = [
      ...one.flatMap((r, i) => (r.ok ? [`alice-${i}`] : [])),
      ...admitted.map((i) => `lab-${i}`),
    ].sort();
    for (const r of replicas) expect((await r.ids()).sort()).toEqual(expected);
    expect(replicas.reduce((n, r) => n + r.size, 0)).toBe(12);
    // The user refusal lists the sessions that hold the slots, wherever they run.
    const refused = await replicas[0]!.reserve('alice', 'd', 'alice-late');
    expect(refused.ok).toBe(false);
    expect(
      !refused.ok && refused.cap === 'user' ? refused.activeSessions.map((s) => s.sessionId).sort() : [],
    ).toEqual(one.flatMap((r, i) => (r.ok ? [`alice-${i}`] : [])).sort());
  });

  it('a replica that stops heartbeating loses its slots after the lease; a live one keeps them', async () => {
    const p = prefix();
    const dead = await caps(p, 'dead', { perUser: 2, perCluster: 10 }, SHORT);
    const live = await caps(p, 'live', { perUser: 2, perCluster: 10 }, SHORT);
    expect((await dead.reserve('alice', 'lab', 'd1')).ok).toBe(true);
    expect((await live.reserve('alice', 'lab', 'l1')).ok).toBe(true);
    expect(await live.reserve('alice', 'lab', 'l2')).toMatchObject({ ok: false, cap: 'user' });
    // The "dead" replica stops renewing without freeing anything (a kill -9).
    await dead.stop({ release: false });
    const started = Date.now();
    await until('the dead replica slot to expire', async () => !(await live.ids()).includes('d1'), 10_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(SHORT.leaseMs - 400);
    // Its slot is free again; the live replica's slot outlived several leases.
    await new Promise((r) => setTimeout(r, SHORT.leaseMs * 2));
    expect(await live.ids()).toEqual(['l1']);
    expect((await live.reserve('alice', 'lab', 'l3')).ok).toBe(true);
    expect(await live.reserve('alice', 'lab', 'l4')).toMatchObject({ ok: false, cap: 'user' });
  });

  it('releases a slot exactly once: a second release never frees another session', async () => {
    const p = prefix();
    const a = await caps(p, 'a', { perUser: 1, perCluster: 10 });
    const b = await caps(p, 'b', { perUser: 1, perCluster: 10 });
    const first = (await a.reserve('alice', 'lab', 's1')) as Extract<CapOutcome, { ok: true }>;
    expect(first.ok).toBe(true);
    first.release();
    await until('the slot to be free', async () => (await a.ids()).length === 0, 5_000);
    expect((await b.reserve('alice', 'lab', 's2')).ok).toBe(true);
    first.release();
    expect(await a.releaseSlot('s1')).toBe(false);
    // Another replica cannot free a slot it does not hold.
    expect(await a.releaseSlot('s2')).toBe(false);
    await new Promise((r) => setTimeout(r, 200));
    expect(await a.ids()).toEqual(['s2']);
    expect(await a.reserve('alice', 'lab', 's3')).toMatchObject({ ok: false, cap: 'user', limit: 1 });
  });

  it('a replica that stops cleanly frees its slots at once, not at the end of their lease', async () => {
    const p = prefix();
    const leaving = await caps(p, 'leaving', { perUser: 2, perCluster: 10 });
    const staying = await caps(p, 'staying', { perUser: 2, perCluster: 10 });
    expect((await leaving.reserve('alice', 'lab', 'x1')).ok).toBe(true);
    expect((await leaving.reserve('alice', 'lab', 'x2')).ok).toBe(true);
    expect(await staying.reserve('alice', 'lab', 'y1')).toMatchObject({ ok: false, cap: 'user' });
    await leaving.stop({ release: true });
    expect(await staying.ids()).toEqual([]);
    expect((await staying.reserve('alice', 'lab', 'y2')).ok).toBe(true);
  });

  it('ownership records: set if absent, renewed while held, released only by the owner, expired when not renewed', async () => {
    const p = prefix();
    const leasesA = new RedisLeases(await client());
    const leasesB = new RedisLeases(await client());
    const a = new RedisOwnership('session', leasesA, p, 'replica-a', SHORT, log);
    const b = new RedisOwnership('session', leasesB, p, 'replica-b', SHORT, log);
    stoppers.push(() => b.stop({ release: false }));
    expect(await a.claim('s1')).toBe(true);
    expect(await b.claim('s1')).toBe(false);
    expect(await b.ownerOf('s1')).toBe('replica-a');
    await new Promise((r) => setTimeout(r, SHORT.leaseMs * 2.5));
    expect(await b.ownerOf('s1'), 'renewed past its lease').toBe('replica-a');
    await b.release('s1');
    expect(await b.ownerOf('s1'), 'not released by another replica').toBe('replica-a');
    // Take-over (an agent that reconnected to another replica): the old owner's renewal finds it
    // gone and drops it; its release then leaves the new owner's record alone.
    expect(await a.claim('lab')).toBe(true);
    expect(await b.claim('lab', { takeOver: true })).toBe(true);
    await a.renewAll();
    expect(a.held()).toEqual(['s1']);
    await a.release('lab');
    expect(await a.ownerOf('lab')).toBe('replica-b');
    await a.release('s1');
    expect(await b.ownerOf('s1')).toBeUndefined();
    // A replica that dies: its records end with their lease.
    expect(await a.claim('s2')).toBe(true);
    await a.stop({ release: false });
    expect(await b.ownerOf('s2')).toBe('replica-a');
    await until(
      'the record of the dead replica to expire',
      async () => (await b.ownerOf('s2')) === undefined,
      10_000,
    );
    expect(await b.claim('s2')).toBe(true);
  });

  it('the reaper lock: one of two contenders holds it; another takes it after the holder stops renewing', async () => {
    const p = prefix();
    const one = new RedisLock('shell-reaper', new RedisLeases(await client()), p, 'one', SHORT, log);
    const two = new RedisLock('shell-reaper', new RedisLeases(await client()), p, 'two', SHORT, log);
    stoppers.push(
      () => one.stop({ release: false }),
      () => two.stop({ release: false }),
    );
    await until('a holder', () => one.isHeld() || two.isHeld(), 5_000);
    const [holder, other] = one.isHeld() ? [one, two] : [two, one];
    // Over several leases, always exactly the same one.
    for (let i = 0; i < 12; i++) {
      await new Promise((r) => setTimeout(r, 250));
      expect([holder.isHeld(), other.isHeld()]).toEqual([true, false]);
    }
    // The holder dies without a word: the other takes over once the lease ended.
    const died = Date.now();
    await holder.stop({ release: false });
    expect(holder.isHeld()).toBe(false);
    await until('the other contender to take the lock', () => other.isHeld(), 10_000);
    expect(Date.now() - died).toBeGreaterThanOrEqual(SHORT.leaseMs - 400);
    // A clean stop frees it at once for a third.
    const third = new RedisLock('shell-reaper', new RedisLeases(await client()), p, 'three', SHORT, log);
    stoppers.push(() => third.stop({ release: false }));
    await other.stop({ release: true });
    await until('a third contender to take the released lock', () => third.isHeld(), SHORT.leaseMs);
  });

  it('a Redis that needs a password: connects with it; the errors never show it', async () => {
    const secret = 'pw-3f9c1d0e-never-logged';
    const locked = await startRedisServer({ password: secret });
    try {
      const url = new URL(locked.url);
      const bare = `redis://127.0.0.1:${locked.port}/0`;
      const good = redisClient({ url: bare, password: secret });
      await connectRedis(good, bare, 10_000);
      expect(await good.ping()).toBe('PONG');
      await closeRedis(good);
      const bad = redisClient({ url: bare, password: 'wrong-password-also-secret' });
      const err = (await connectRedis(bad, bare, 5_000).then(
        () => undefined,
        (e: unknown) => e,
      )) as Error | undefined;
      expect(err?.message).toMatch(
        /could not reach Redis at redis:\/\/127\.0\.0\.1:\d+\/0 \(PERISCOPE_REDIS_URL\)/,
      );
      expect(err?.message).not.toContain('wrong-password-also-secret');
      expect(err?.message).not.toContain(url.password);
    } finally {
      await locked.stop();
    }
  });

  it('Redis away: a reservation fails at once (the admission answers 503), it never admits', async () => {
    const doomed = await startRedisServer();
    const c = redisClient({ url: doomed.url });
    await connectRedis(c, doomed.url, 10_000);
    const slots = new RedisCapSlots('cluster_shell', c, prefix(), 'r', 2, 10, LONG, log);
    try {
      expect((await slots.reserve('alice', 'lab', 'before')).ok).toBe(true);
      await doomed.kill();
      const started = Date.now();
      await expect(slots.reserve('alice', 'lab', 'during')).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(6_000);
      expect(slots.has('during')).toBe(false);
      await expect(slots.ids()).rejects.toThrow();
    } finally {
      await slots.stop({ release: false });
      await closeRedis(c);
    }
  });

  it('start-up gives up on an unreachable Redis within its deadline, saying what to check', async () => {
    const gone = await startRedisServer();
    const url = gone.url;
    await gone.stop();
    const c = redisClient({ url });
    const started = Date.now();
    const err = (await connectRedis(c, url, 3_000).then(
      () => undefined,
      (e: unknown) => e,
    )) as Error | undefined;
    expect(Date.now() - started).toBeLessThan(4_500);
    expect(err?.message).toMatch(
      /could not reach Redis at .*PERISCOPE_REDIS_URL.*unset PERISCOPE_REDIS_URL/s,
    );
  });
});

/**
 * Two real server instances sharing one redis-server and one direct (kubeconfig) cluster on the
 * local control plane: the cluster-shell caps hold across them.
 */
describe('two server replicas sharing Redis: cluster-shell caps across replicas', () => {
  let redis: TestRedis;
  const servers: TestServer[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
    const info = inject('cluster');
    const { adminKubeconfig } = info;
    // The shell namespace must exist for the readiness check (the admin has every right there).
    await new TestClusterClient(info).createNamespace(SHELL_NAMESPACE);
    for (const replica of ['replica-a', 'replica-b']) {
      const dir = writeConfigDir(`shared-state-${replica}`, adminKubeconfig, {
        groupTiers: { admins: 'admin' },
        users: [{ subject: 'alice@example.com', groups: ['admins'] }],
      });
      servers.push(
        await startTestServer(
          testServerConfig(dir, {
            PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
            PERISCOPE_CLUSTER_SHELL_NAMESPACE: SHELL_NAMESPACE,
            PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '2',
            PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_TOTAL: '10',
            PERISCOPE_REDIS_URL: redis.url,
            PERISCOPE_REPLICA_SECRET: 'replica-secret-shared-by-the-test-replicas',
            PERISCOPE_REPLICA_ID: replica,
            PERISCOPE_METRICS_PORT: '0',
          }),
        ),
      );
    }
  });

  afterAll(async () => {
    for (const s of servers) await s.stop();
    await redis.stop();
  });

  async function open(
    base: string,
    cookie: string,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${base}/api/clusters/lab/shell/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie },
      body: '{}',
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  it('2 concurrent opens by one user through each replica (4 in all) admit exactly 2, the rest refused with E_CAP_USER', async () => {
    const [a, b] = servers as [TestServer, TestServer];
    const cookies = await Promise.all(servers.map((s) => devLogin(s.base, 'alice@example.com')));
    const answers = await Promise.all([a, a, b, b].map((s, i) => open(s.base, cookies[i < 2 ? 0 : 1] ?? '')));
    expect(answers.map((x) => x.status).sort(), JSON.stringify(answers)).toEqual([201, 201, 429, 429]);
    for (const refused of answers.filter((x) => x.status === 429)) {
      expect(refused.body['error']).toBe('E_CAP_USER');
      expect(refused.body['limit']).toBe(2);
      expect(refused.body['activeSessions']).toHaveLength(2);
    }
    const admitted = answers.filter((x) => x.status === 201).map((x) => x.body['sessionId'] as string);
    // Both replicas see the same two slots.
    const capsA = a.server.get(ShellAdmission).caps;
    const capsB = b.server.get(ShellAdmission).caps;
    expect((await capsA.ids()).sort()).toEqual([...admitted].sort());
    expect((await capsB.ids()).sort()).toEqual([...admitted].sort());
    expect(a.server.get(SharedState).replicaId).toBe('replica-a');
    expect(b.server.get(SharedState).replicaId).toBe('replica-b');
  });
});
