/**
 * The re-homing records of sessions (apps/server/src/terminal/rehome-store.ts) and the fencing of
 * their ownership against a real redis-server: each "replica" its own client, as separate server
 * processes would be. The take-over is a compare-and-set with an epoch; the sweep's fence and a
 * take-over exclude each other; a replica that lost a session hears it at its next renewal.
 */
import type { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { closeRedis, connectRedis, redisClient } from '../../apps/server/src/shared-state/redis-client';
import { RedisLeases, RedisOwnership } from '../../apps/server/src/shared-state/redis-leases';
import { RehomeStore } from '../../apps/server/src/terminal/rehome-store';
import { startRedisServer, type TestRedis } from '../support/redis-server';
import { until } from '../support/wait';

const log = pino({ level: 'silent' });
const LEASE_MS = 30_000;

describe('re-homing records in Redis: take-over with an epoch, fence of the sweep', () => {
  let redis: TestRedis;
  const clients: Redis[] = [];
  const stoppers: (() => Promise<void>)[] = [];
  let n = 0;
  const prefix = (): string => `rh${++n}:`;

  async function client(): Promise<Redis> {
    const c = redisClient({ url: redis.url });
    await connectRedis(c, redis.url, 10_000);
    clients.push(c);
    return c;
  }

  async function replica(p: string, id: string, timing = { leaseMs: LEASE_MS }) {
    const c = await client();
    const owners = new RedisOwnership('session', new RedisLeases(c), p, id, timing, log);
    stoppers.push(() => owners.stop({ release: false }));
    return { owners, store: new RehomeStore(c, p, id, LEASE_MS), redis: c };
  }

  const record = (sessionId: string, streamId = 2) => ({
    sessionId,
    kind: 'cluster_shell',
    cluster: 'edge',
    streamId,
    subject: 'alice',
    tier: 'admin',
    mode: 'bash',
    loginId: 'abcdefghijklmnopqrstuv',
    startedAt: Date.now() - 5_000,
    maxEndsAt: Date.now() + 3_600_000,
    capPool: 'cluster_shell',
    pod: `periscope-shell-${sessionId}`,
    recording: true,
  });

  beforeAll(async () => {
    redis = await startRedisServer();
  });

  afterAll(async () => {
    for (const s of stoppers) await s();
    for (const c of clients) await closeRedis(c);
    await redis.stop();
  });

  it('one of two replicas racing for a session takes it over (epoch 2); the record keeps every field, no token', async () => {
    const p = prefix();
    const b = await replica(p, 'B');
    await b.owners.claim('s1');
    const written = record('s1');
    await b.store.write(written, 120_000);
    const [c, d] = await Promise.all([replica(p, 'C'), replica(p, 'D')]);
    // Both read the record (epoch 1), then both compare-and-set from it.
    const seen = await Promise.all([c.store.read('s1'), d.store.read('s1')]);
    expect(seen.map((r) => r?.epoch)).toEqual([1, 1]);
    const outcomes = await Promise.all([c.store.adopt('s1', 2, 1), d.store.adopt('s1', 2, 1)]);
    const won = outcomes.filter((o) => o.ok);
    expect(won).toHaveLength(1);
    const w = won[0];
    if (!w?.ok) throw new Error('unreachable');
    expect(w.from).toBe('B');
    expect(w.epoch).toBe(2);
    // Every field as written (epoch-ms times exact through Lua's cjson), the owner and epoch new.
    expect(w.record).toEqual({ v: 1, ...written, owner: w.record.owner, epoch: 2 });
    expect(['C', 'D']).toContain(w.record.owner);
    const lost = outcomes.find((o) => !o.ok);
    expect(lost).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/another replica took the session over/),
    });
    // The ownership record routing reads names the winner.
    expect(await b.owners.ownerOf('s1')).toBe(w.record.owner);
    const raw = (await b.redis.get(`${p}rehome:s1`)) ?? '';
    expect(raw).not.toMatch(/token|cookie|secret/i);
  });

  it('refuses another stream id, a missing record, and a replica that already holds it', async () => {
    const p = prefix();
    const b = await replica(p, 'B');
    await b.owners.claim('s2');
    await b.store.write(record('s2', 4), 120_000);
    const c = await replica(p, 'C');
    expect(await c.store.adopt('s2', 6, 1)).toMatchObject({ ok: false, reason: /another stream/ });
    expect(await c.store.adopt('nope', 4, 1)).toMatchObject({ ok: false, reason: /no re-homing record/ });
    expect(await b.store.adopt('s2', 4, 1)).toMatchObject({ ok: false, reason: /already holds/ });
    expect(await c.store.adopt('s2', 4, 7)).toMatchObject({ ok: false, reason: /took the session over/ });
    expect((await c.store.adopt('s2', 4, 1)).ok).toBe(true);
    // The agent moves on to D: a take-over from C at epoch 2.
    const d = await replica(p, 'D');
    expect(await d.store.adopt('s2', 4, 2)).toMatchObject({ ok: true, from: 'C', epoch: 3 });
    expect(await c.store.read('s2')).toMatchObject({ owner: 'D', epoch: 3 });
    await d.store.drop('s2');
    expect(await c.store.read('s2')).toBeUndefined();
    // Only the holder drops it.
    await b.store.write(record('s2b'), 120_000);
    await c.store.drop('s2b');
    expect(await c.store.read('s2b')).toBeDefined();
    await b.store.drop('s2b');
    expect(await c.store.read('s2b')).toBeUndefined();
  });

  it('the sweep’s fence and a take-over exclude each other: an owned session is never fenced; a fenced one is never taken over', async () => {
    const p = prefix();
    const b = await replica(p, 'B');
    await b.store.write(record('s3'), 120_000);
    await b.store.write(record('s4'), 120_000);
    const c = await replica(p, 'C');
    // s3: taken over first; the sweep's fence then leaves it (no replica_lost).
    expect((await c.store.adopt('s3', 2, 1)).ok).toBe(true);
    expect(await c.store.fence('s3')).toBe(false);
    // s4: nobody owns it (its replica's lease ended): fenced, then no take-over.
    expect(await c.store.fence('s4')).toBe(true);
    expect(await c.store.adopt('s4', 2, 1)).toMatchObject({ ok: false, reason: /no re-homing record/ });
  });

  it('a live replica that lost the session hears it at its next renewal (onLost)', async () => {
    const p = prefix();
    const b = await replica(p, 'B', { leaseMs: 2_000, renewEveryMs: 200 } as { leaseMs: number });
    const lostIds: string[] = [];
    b.owners.onLost((id) => lostIds.push(id));
    await b.owners.claim('s5');
    await b.store.write(record('s5'), 120_000);
    const c = await replica(p, 'C');
    expect((await c.store.adopt('s5', 2, 1)).ok).toBe(true);
    await until('B to hear it lost s5', () => lostIds.includes('s5'), 5_000);
    expect(b.owners.held()).not.toContain('s5');
    expect(await b.owners.ownerOf('s5')).toBe('C');
  });
});
