import { ERROR_CODE } from '@periscope/protocol';
import type { Redis } from 'ioredis';

import { DomainError } from '../common/domain-error';
import type { ActiveSession, CapOutcome, CapSlots, ReserveOptions } from './cap-slots';
import type { LeaseTiming } from './redis-leases';
import { LUA_NOW_MS, luaScript, PendingOps, type ScriptCall, type StateLog } from './redis-script';

/**
 * KEYS: all, user, cluster, slot. ARGV: lease ms, per-user limit, per-cluster limit, session id,
 * slot JSON, slot key prefix. Expired entries go first; then the user cap, then the cluster cap
 * (the order of the in-memory caps); then the slot is taken in all three sets. Answers
 * {'ok'}, {'user', slot JSON…} or {'cluster', count}.
 */
const RESERVE = `${LUA_NOW_MS}
local lease = tonumber(ARGV[1])
for i = 1, 3 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
local mine = redis.call('ZRANGE', KEYS[2], 0, -1)
if #mine >= tonumber(ARGV[2]) then
  local out = {'user'}
  for _, id in ipairs(mine) do
    local v = redis.call('GET', ARGV[6] .. id)
    if v then table.insert(out, v) end
  end
  return out
end
local n = redis.call('ZCARD', KEYS[3])
if n >= tonumber(ARGV[3]) then return {'cluster', tostring(n)} end
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], now + lease, ARGV[4])
  if redis.call('PTTL', KEYS[i]) < lease then redis.call('PEXPIRE', KEYS[i], lease) end
end
redis.call('SET', KEYS[4], ARGV[5], 'PX', lease)
return {'ok'}`;

/**
 * KEYS: all, user, cluster, slot. ARGV: lease ms, session id, slot JSON, owner. The slot's lease
 * again (taken again when it had expired: the session still lives). 1 renewed, 2 taken again,
 * 0 another replica's (left alone).
 */
const RENEW = `${LUA_NOW_MS}
local lease = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[4])
local result = 1
if v then
  if cjson.decode(v).owner ~= ARGV[4] then return 0 end
  redis.call('PEXPIRE', KEYS[4], lease)
else
  redis.call('SET', KEYS[4], ARGV[3], 'PX', lease)
  result = 2
end
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], now + lease, ARGV[2])
  if redis.call('PTTL', KEYS[i]) < lease then redis.call('PEXPIRE', KEYS[i], lease) end
end
return result`;

/**
 * KEYS: all, user, cluster, slot. ARGV: session id, owner. Frees the slot when it is the owner's
 * (1), never another replica's (0).
 */
const RELEASE = `local v = redis.call('GET', KEYS[4])
if v and cjson.decode(v).owner ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[4])
for i = 1, 3 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1`;

/**
 * KEYS: all, user, cluster, slot. ARGV: lease ms, session id, slot JSON (unused), owner.
 * The slot of a ticket another replica issued, taken over by the replica that redeemed it
 * (redis-tickets.ts). Answers the slot's record as stored, or nil when the slot is gone: its lease
 * (taken before the ticket was issued) ended in the ticket's last moments, and another open may
 * hold that place by now, so taking it again could exceed the cap (the redemption is refused).
 */
const ADOPT = `${LUA_NOW_MS}
local lease = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[4])
if not v then
  for i = 1, 3 do redis.call('ZREM', KEYS[i], ARGV[2]) end
  return false
end
local r = cjson.decode(v)
r.owner = ARGV[4]
local json = cjson.encode(r)
redis.call('SET', KEYS[4], json, 'PX', lease)
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], now + lease, ARGV[2])
  if redis.call('PTTL', KEYS[i]) < lease then redis.call('PEXPIRE', KEYS[i], lease) end
end
return json`;

/** KEYS: all. The ids of every unexpired slot. */
const LIVE_IDS = `${LUA_NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)`;

interface HeldSlot {
  keys: [string, string, string, string];
  json: string;
}

interface SlotRecord extends ActiveSession {
  owner: string;
}

/**
 * Cap slots in Redis, shared by every replica: per pool (`cluster_shell`), a sorted set of all
 * slots, one per subject and one per cluster (scored by lease end), and a key per slot (its
 * record and owner replica, with the lease as TTL). One Lua script checks every cap and takes the
 * slot; a heartbeat renews this replica's slots while their sessions live; a replica that dies
 * stops renewing and its slots end with their lease. Keys of one pool share a hash tag.
 */
export class RedisCapSlots implements CapSlots {
  private readonly mine = new Map<string, HeldSlot>();
  private readonly pending = new PendingOps();
  private readonly timer: NodeJS.Timeout;
  private readonly reserveScript: ScriptCall;
  private readonly renewScript: ScriptCall;
  private readonly releaseScript: ScriptCall;
  private readonly idsScript: ScriptCall;
  private readonly adoptScript: ScriptCall;
  private readonly base: string;
  private stopped = false;

  constructor(
    readonly pool: string,
    redis: Redis,
    prefix: string,
    private readonly replica: string,
    private readonly perUser: number,
    private readonly perCluster: number,
    private readonly timing: LeaseTiming,
    private readonly log: StateLog,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.base = `${prefix}caps:{${pool}}:`;
    this.reserveScript = luaScript(redis, 'periscopeCapReserve', 4, RESERVE);
    this.renewScript = luaScript(redis, 'periscopeCapRenew', 4, RENEW);
    this.releaseScript = luaScript(redis, 'periscopeCapRelease', 4, RELEASE);
    this.idsScript = luaScript(redis, 'periscopeCapIds', 1, LIVE_IDS);
    this.adoptScript = luaScript(redis, 'periscopeCapAdopt', 4, ADOPT);
    this.timer = setInterval(
      () => {
        void this.renewAll();
      },
      timing.renewEveryMs ?? Math.floor(timing.leaseMs / 3),
    );
    this.timer.unref();
  }

  private keys(subject: string, cluster: string, sessionId: string): HeldSlot['keys'] {
    return [
      `${this.base}all`,
      `${this.base}u:${subject}`,
      `${this.base}c:${cluster}`,
      `${this.base}s:${sessionId}`,
    ];
  }

  get size(): number {
    return this.mine.size;
  }

  has(sessionId: string): boolean {
    return this.mine.has(sessionId);
  }

  async ids(): Promise<string[]> {
    return (await this.idsScript(`${this.base}all`)) as string[];
  }

  /** Rejects when Redis does not answer (the caller refuses the open: no slot, no session). */
  async reserve(
    subject: string,
    cluster: string,
    sessionId: string,
    opts: ReserveOptions = {},
  ): Promise<CapOutcome> {
    if (this.stopped) throw new Error('the shared state is closed (server shutting down)');
    const perUser = opts.perUser ?? this.perUser;
    const perCluster = opts.perCluster ?? this.perCluster;
    const record: SlotRecord = {
      sessionId,
      subject,
      cluster,
      startedAt: this.now().toISOString(),
      ...(opts.detail ? { detail: opts.detail } : {}),
      owner: this.replica,
    };
    const json = JSON.stringify(record);
    const keys = this.keys(subject, cluster, sessionId);
    const answer = (await this.pending.track(
      this.reserveScript(
        ...keys,
        this.timing.leaseMs,
        perUser,
        perCluster,
        sessionId,
        json,
        `${this.base}s:`,
      ),
    )) as string[];
    if (answer[0] === 'user') {
      const activeSessions = answer
        .slice(1)
        .map((v) => withoutOwner(JSON.parse(v) as SlotRecord))
        .sort((a, b) => a.startedAt.localeCompare(b.startedAt));
      return { ok: false, cap: 'user', limit: perUser, activeSessions };
    }
    if (answer[0] === 'cluster')
      return { ok: false, cap: 'cluster', limit: perCluster, activeSessions: Number(answer[1]) };
    // Bounded by the caps: a replica holds at most the slots the caps admit.
    this.mine.set(sessionId, { keys, json });
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        void this.releaseSlot(sessionId);
      },
    };
  }

  /**
   * Takes over the slot of a ticket another replica issued and this one redeemed: this replica
   * owns, renews and frees it from now on; the issuer's release leaves it alone (not its owner).
   */
  async adopt(slot: Omit<ActiveSession, 'startedAt'>): Promise<() => void> {
    if (this.stopped) throw new Error('the shared state is closed (server shutting down)');
    const keys = this.keys(slot.subject, slot.cluster, slot.sessionId);
    const answer = (await this.pending.track(
      this.adoptScript(...keys, this.timing.leaseMs, slot.sessionId, '', this.replica),
    )) as string | null;
    if (answer === null)
      throw new DomainError(
        ERROR_CODE.auth,
        'the terminal ticket expired before it was used (its cap slot ended with it); ask for a new ticket',
      );
    this.mine.set(slot.sessionId, { keys, json: answer });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      void this.releaseSlot(slot.sessionId);
    };
  }

  /**
   * The slot leaves this replica's heartbeat: a terminal ticket carries it to whichever replica
   * redeems it ({@link adopt}). Answers how to free it when nobody did (left alone once another
   * replica owns it).
   */
  handOver(sessionId: string): () => void {
    const held = this.mine.get(sessionId);
    this.mine.delete(sessionId);
    return () => {
      if (held === undefined || this.stopped || this.mine.has(sessionId)) return;
      this.pending.track(this.releaseScript(...held.keys, sessionId, this.replica)).catch((err: unknown) => {
        this.log.warn(
          { pool: this.pool, sessionId, err: (err as Error).message },
          'could not free the cap slot of an unused ticket in Redis; it ends with its lease',
        );
      });
    };
  }

  /** Frees one of this replica's slots (exactly once: later calls find nothing of ours). */
  async releaseSlot(sessionId: string): Promise<boolean> {
    const held = this.mine.get(sessionId);
    if (!held) return false;
    this.mine.delete(sessionId);
    if (this.stopped) return false;
    try {
      return (
        Number(await this.pending.track(this.releaseScript(...held.keys, sessionId, this.replica))) === 1
      );
    } catch (err) {
      this.log.warn(
        { pool: this.pool, sessionId, err: (err as Error).message },
        'could not free the cap slot in Redis; it ends with its lease',
      );
      return false;
    }
  }

  /** One heartbeat: every slot this replica holds gets its lease again. */
  async renewAll(): Promise<void> {
    let failed = 0;
    let lastError = '';
    await Promise.all(
      [...this.mine].map(async ([sessionId, held]) => {
        try {
          const r = Number(
            await this.pending.track(
              this.renewScript(...held.keys, this.timing.leaseMs, sessionId, held.json, this.replica),
            ),
          );
          // Another replica owns it now (a ticket redeemed there adopted it): no longer ours.
          if (r === 0) this.mine.delete(sessionId);
          if (r === 2)
            this.log.warn(
              { pool: this.pool, sessionId },
              'a live session had lost its cap slot (Redis away longer than the lease?); taken again, the cap may be exceeded for a while',
            );
        } catch (err) {
          failed++;
          lastError = (err as Error).message;
        }
      }),
    );
    if (failed > 0)
      this.log.warn(
        { pool: this.pool, failed, err: lastError },
        'could not renew cap slots in Redis; retrying at the next heartbeat (they expire if Redis stays away)',
      );
  }

  /**
   * Stops the heartbeat; `release`: frees this replica's slots now (their sessions have ended by
   * then), otherwise they end with their lease (what a replica that dies leaves).
   */
  async stop({ release, deadlineMs = 2_000 }: { release: boolean; deadlineMs?: number }): Promise<void> {
    clearInterval(this.timer);
    if (release) for (const id of [...this.mine.keys()]) void this.releaseSlot(id);
    this.stopped = true;
    this.mine.clear();
    await this.pending.drain(deadlineMs);
  }
}

function withoutOwner(r: SlotRecord): ActiveSession {
  const { owner: _owner, ...rest } = r;
  return rest;
}
