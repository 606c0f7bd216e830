import 'reflect-metadata';

import type { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { PodExecAdmission } from '../../apps/server/src/pod-exec/pod-exec-admission.service';
import { RedisCapSlots } from '../../apps/server/src/shared-state/redis-cap-slots';
import { closeRedis, connectRedis, redisClient } from '../../apps/server/src/shared-state/redis-client';
import { RedisTickets, sharedSlotTransfer } from '../../apps/server/src/terminal/redis-tickets';
import type { TicketBase } from '../../apps/server/src/terminal/tickets';
import { TestClusterClient } from '../k8s/cluster';
import { devLogin } from '../support/dev-login';
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

const ORIGIN = 'http://localhost:8080';
const PER_USER = 2;
const PER_CLUSTER = 5;
const USERS = ['alice', 'bob', 'carol', 'dave', 'erin'].map((u) => `${u}@example.com`);

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * Pod-exec caps on two real server instances sharing one redis-server (the local control plane's
 * cluster, twice under two names): concurrent opens split over both admit exactly the caps; a
 * session closed on one replica frees its slot for the other; an unused ticket's slot comes back.
 */
describe('two server replicas sharing Redis: pod-exec caps across replicas', () => {
  let redis: TestRedis;
  const servers: TestServer[] = [];
  const cluster = new TestClusterClient(inject('cluster'));
  const ns = `exec-caps-${Date.now().toString(36)}`;
  const cookies = new Map<string, string[]>();

  beforeAll(async () => {
    redis = await startRedisServer();
    await startExecPod(cluster, ns, [{ tier: 'admin', role: 'admin', name: 'admin-tier' }]);
    const { adminKubeconfig } = inject('cluster');
    for (const replica of ['exec-a', 'exec-b']) {
      const dir = writeConfigDir(
        `exec-caps-${replica}`,
        adminKubeconfig,
        { groupTiers: { admins: 'admin' }, users: USERS.map((subject) => ({ subject, groups: ['admins'] })) },
        [
          `{ name: lab, backend: kubeconfig, kubeconfigPath: ${adminKubeconfig} }`,
          `{ name: lab2, backend: kubeconfig, kubeconfigPath: ${adminKubeconfig} }`,
        ],
      );
      servers.push(
        await startTestServer(
          testServerConfig(dir, {
            ...sharedRedisReplicaEnv(redis.url, replica, ORIGIN),
            PERISCOPE_EXEC_MAX_SESSIONS_PER_USER: String(PER_USER),
            PERISCOPE_EXEC_MAX_SESSIONS_TOTAL: String(PER_CLUSTER),
          }),
        ),
      );
    }
    for (const u of USERS) cookies.set(u, await Promise.all(servers.map((s) => devLogin(s.base, u))));
  }, 180_000);

  afterAll(async () => {
    for (const s of servers) await s.stop();
    await redis.stop();
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
  });

  /** One open through replica `i` (0: A, 1: B) as `user`. */
  async function open(i: number, user: string, on = 'lab'): Promise<Answer> {
    const s = servers[i] as TestServer;
    const res = await fetch(`${s.base}/api/clusters/${on}/pods/${ns}/app/exec/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie: cookies.get(user)?.[i] ?? '', origin: ORIGIN },
      body: JSON.stringify({ container: 'main' }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  const caps = (i: number): PodExecAdmission['caps'] =>
    (servers[i] as TestServer).server.get(PodExecAdmission).caps;

  /** alice's two admitted sessions (tickets not redeemed yet), shared by the later tests. */
  const alice: { sessionId: string; socketPath: string; issuer: number }[] = [];

  it('4 concurrent opens by one user, 2 through each replica, admit exactly 2; the others get E_CAP_USER with both sessions', async () => {
    const user = USERS[0] as string;
    const through = [0, 0, 1, 1];
    const answers = await Promise.all(through.map((i) => open(i, user)));
    expect(answers.map((a) => a.status).sort(), JSON.stringify(answers)).toEqual([201, 201, 429, 429]);
    const admitted = answers.flatMap((a, n) =>
      a.status === 201
        ? [
            {
              sessionId: a.body['sessionId'] as string,
              socketPath: a.body['socketPath'] as string,
              issuer: through[n] as number,
            },
          ]
        : [],
    );
    alice.push(...admitted);
    for (const refused of answers.filter((a) => a.status === 429)) {
      expect(refused.body['error']).toBe('E_CAP_USER');
      expect(refused.body['limit']).toBe(PER_USER);
      const active = refused.body['activeSessions'] as Record<string, unknown>[];
      expect(active.map((x) => x['sessionId']).sort()).toEqual(admitted.map((x) => x.sessionId).sort());
      for (const x of active)
        expect(x).toMatchObject({
          cluster: 'lab',
          kind: 'pod_exec',
          namespace: ns,
          pod: 'app',
          container: 'main',
        });
    }
    // Both replicas see the same two slots.
    for (const i of [0, 1])
      expect((await caps(i).ids()).sort()).toEqual(admitted.map((x) => x.sessionId).sort());
  });

  it('12 concurrent opens by four users over both replicas on another cluster admit exactly the cluster cap (5), at most 2 per user', async () => {
    const users = USERS.slice(1);
    const opens = users.flatMap((u, k) => [0, 1, 2].map((n) => ({ user: u, through: (k + n) % 2 })));
    const answers = await Promise.all(opens.map((o) => open(o.through, o.user, 'lab2')));
    const admitted = answers.filter((a) => a.status === 201);
    expect(admitted, JSON.stringify(answers)).toHaveLength(PER_CLUSTER);
    for (const u of users) {
      const mine = answers.filter((a, n) => a.status === 201 && opens[n]?.user === u);
      expect(mine.length, u).toBeLessThanOrEqual(PER_USER);
    }
    const refused = answers.filter((a) => a.status !== 201);
    expect(refused).toHaveLength(opens.length - PER_CLUSTER);
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(['E_CAP_USER', 'E_CAP_CLUSTER']).toContain(r.body['error']);
      if (r.body['error'] === 'E_CAP_CLUSTER') {
        expect(r.body['limit']).toBe(PER_CLUSTER);
        expect(r.body['activeSessions']).toBe(PER_CLUSTER);
      } else expect(r.body['limit']).toBe(PER_USER);
    }
    expect(refused.some((r) => r.body['error'] === 'E_CAP_CLUSTER')).toBe(true);
    // One more, through either replica, by a user under their own cap: the cluster is full.
    const more = await open(1, USERS[4] as string, 'lab2');
    if (more.status === 429) expect(['E_CAP_CLUSTER', 'E_CAP_USER']).toContain(more.body['error']);
    expect(more.status).toBe(429);
  });

  it("a session closed on one replica frees its slot for the other; an unused ticket's slot comes back after its expiry", async () => {
    const user = USERS[0] as string;
    const [used, unused] = alice as [(typeof alice)[0], (typeof alice)[0]];
    // The ticket redeemed on the replica that did not issue it: a real exec there.
    const on = 1 - used.issuer;
    const s = servers[on] as TestServer;
    const t = new TerminalClient(`${s.base.replace('http', 'ws')}${used.socketPath}`, {
      cookie: cookies.get(user)?.[on] ?? '',
      origin: ORIGIN,
    });
    await t.opened;
    t.type('echo "exec $((40 + 2))"\n');
    await t.waitText('the exec on the other replica', /exec 42/);
    // The slot is the redeemer's now, still counted on both.
    expect(caps(on).has(used.sessionId)).toBe(true);
    expect(await caps(1 - on).ids()).toContain(used.sessionId);
    // Full for alice through the issuer while the session lives.
    const full = await open(used.issuer, user);
    expect(full.status).toBe(429);
    expect(full.body['error']).toBe('E_CAP_USER');
    t.type('exit\n');
    await t.closed;
    // Freed on the other replica too: the issuer admits alice again.
    await expect
      .poll(async () => (await caps(used.issuer).ids()).includes(used.sessionId), { timeout: 10_000 })
      .toBe(false);
    const again = await open(used.issuer, user);
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    // The unused ticket (30 s) still holds its slot: alice is full again.
    expect((await open(on, user)).status).toBe(429);
    expect(await caps(on).ids()).toContain(unused.sessionId);
    // About a second after it expired, its issuer gives the slot back, for every replica.
    await expect
      .poll(async () => (await caps(on).ids()).includes(unused.sessionId), { timeout: 45_000, interval: 500 })
      .toBe(false);
    const after = await open(on, user);
    expect(after.status, JSON.stringify(after.body)).toBe(201);
    // Expired: the unused ticket opens nothing.
    const late = new TerminalClient(`${s.base.replace('http', 'ws')}${unused.socketPath}`, {
      cookie: cookies.get(user)?.[on] ?? '',
      origin: ORIGIN,
    });
    await expect(late.opened).rejects.toThrow(/HTTP 401/);
  }, 90_000);
});

type ExecTicket = TicketBase & { sessionId: string; cluster: string };

/**
 * The edge of a ticket redeemed in its last moments: its slot's lease (taken just before the
 * ticket was issued) may have ended, and another open may hold that place. The redemption is
 * refused rather than taking the slot again past the cap (a short lease and a longer ticket make
 * the window wide enough to hit on purpose).
 */
describe('a ticket redeemed after its cap slot ended', () => {
  let redis: TestRedis;
  const clients: Redis[] = [];
  const log = pino({ level: 'silent' });

  beforeAll(async () => {
    redis = await startRedisServer();
  });

  afterAll(async () => {
    for (const c of clients) await closeRedis(c);
    await redis.stop();
  });

  async function client(): Promise<Redis> {
    const c = redisClient({ url: redis.url });
    await connectRedis(c, redis.url, 10_000);
    clients.push(c);
    return c;
  }

  it('is refused with E_AUTH and the cap is never exceeded', async () => {
    const p = 'edge:';
    const timing = { leaseMs: 600, renewEveryMs: 60_000 };
    const issuer = new RedisCapSlots('pod_exec', await client(), p, 'a', 1, 10, timing, log);
    const other = new RedisCapSlots('pod_exec', await client(), p, 'b', 1, 10, timing, log);
    const tickets = new RedisTickets<ExecTicket>(
      'pod_exec',
      await client(),
      p,
      sharedSlotTransfer(() => issuer),
      log,
      5_000,
    );
    const redeemer = new RedisTickets<ExecTicket>(
      'pod_exec',
      await client(),
      p,
      sharedSlotTransfer(() => other),
      log,
      5_000,
    );
    try {
      const slot = await issuer.reserve('alice', 'lab', 's-1');
      if (!slot.ok) throw new Error('no slot');
      const { ticket } = await tickets.issue({
        sessionId: 's-1',
        subject: 'alice',
        cluster: 'lab',
        scope: '/x',
        release: slot.release,
      });
      // The slot's lease ends while the ticket still lives; another open takes the place.
      await new Promise((r) => setTimeout(r, 900));
      const taken = await other.reserve('alice', 'lab', 's-2');
      expect(taken.ok).toBe(true);
      await expect(redeemer.redeem(ticket, 'alice', '/x')).rejects.toMatchObject({
        code: 'E_AUTH',
        message: expect.stringMatching(/ticket expired before it was used/) as unknown,
      });
      // One slot for alice (her cap), not two.
      expect(await other.ids()).toEqual(['s-2']);
      expect(other.has('s-1')).toBe(false);
      // A ticket redeemed while its slot lives is adopted as before.
      const third = await issuer.reserve('bob', 'lab', 's-3');
      if (!third.ok) throw new Error('no slot');
      const fresh = await tickets.issue({
        sessionId: 's-3',
        subject: 'bob',
        cluster: 'lab',
        scope: '/x',
        release: third.release,
      });
      const got = await redeemer.redeem(fresh.ticket, 'bob', '/x');
      expect(got?.sessionId).toBe('s-3');
      expect(other.has('s-3')).toBe(true);
    } finally {
      tickets.clear();
      redeemer.clear();
      await issuer.stop({ release: true });
      await other.stop({ release: true });
    }
  });
});
