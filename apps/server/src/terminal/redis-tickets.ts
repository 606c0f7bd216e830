import { createHash, randomBytes } from 'node:crypto';

import { ERROR_CODE } from '@periscope/protocol';
import type { Redis } from 'ioredis';

import type { CapSlots } from '../shared-state/cap-slots';
import { DomainError } from '../common/domain-error';
import { InMemoryTickets, type IssuedTicket, type TicketBase, type TicketStore } from './tickets';
import { RedisCapSlots } from '../shared-state/redis-cap-slots';
import {
  LUA_NOW_MS,
  luaScript,
  PendingOps,
  type ScriptCall,
  type StateLog,
} from '../shared-state/redis-script';
import type { SharedState } from '../shared-state/shared-state.service';

/** What a ticket carries through Redis: everything but its cap slot's release. */
export type StoredTicket<T extends TicketBase> = Omit<T, 'release'>;

/**
 * How a ticket's cap slot travels with it between replicas. `issued`: the ticket now carries the
 * slot; answers how to free it when nobody redeems the ticket (called by the issuer after the
 * ticket expired, whether or not another replica redeemed it: it must then leave that replica's
 * slot alone). `adopt`: the redeeming replica's release of the slot (`issued`: the value, when this
 * replica issued the ticket); throws (a DomainError) to refuse the redemption.
 */
export interface SlotTransfer<T extends TicketBase> {
  issued(value: T): () => void;
  adopt(ticket: StoredTicket<T>, issued: T | undefined): Promise<() => void>;
}

/**
 * The issuer frees the slot of a ticket this long after it expired, whether or not it was
 * redeemed elsewhere (a redeemer elsewhere took the slot over by then: the issuer's release
 * leaves another replica's slot alone). The key itself lives this much longer than the ticket.
 */
export const TICKET_SWEEP_MS = 1_000;

/** KEYS: ticket. ARGV: ttl ms, value. Stores `<expiry ms, Redis clock> <value>`. */
const ISSUE = `${LUA_NOW_MS}
local ttl = tonumber(ARGV[1])
redis.call('SET', KEYS[1], (now + ttl) .. ' ' .. ARGV[2], 'PX', ttl + ${TICKET_SWEEP_MS})
return 1`;

/** KEYS: ticket. Takes it (GET and DEL, atomically): {stored, now} or nil. */
const TAKE = `${LUA_NOW_MS}
local v = redis.call('GET', KEYS[1])
if not v then return nil end
redis.call('DEL', KEYS[1])
return {v, tostring(now)}`;

interface Local<T> {
  value: T;
  timer: NodeJS.Timeout;
  /** frees the slot of the ticket when nobody redeemed it */
  unused: () => void;
}

/**
 * Terminal tickets in Redis: issued by one replica, redeemed exactly once by whichever replica
 * the socket lands on (an atomic take in a Lua script; the expiry checked on Redis's clock). The
 * cap slot goes with the ticket ({@link SlotTransfer}): the redeemer adopts it; the issuer frees
 * it shortly after the ticket's expiry when nobody did. Bounded per replica like the in-memory
 * tickets.
 */
export class RedisTickets<T extends TicketBase> implements TicketStore<T> {
  private readonly issued = new Map<string, Local<T>>();
  private readonly pending = new PendingOps();
  private readonly issueScript: ScriptCall;
  private readonly takeScript: ScriptCall;
  private readonly base: string;

  constructor(
    readonly pool: string,
    private readonly redis: Redis,
    prefix: string,
    private readonly slots: SlotTransfer<T>,
    private readonly log: StateLog,
    private readonly ttlMs = 30_000,
    private readonly max = 10_000,
  ) {
    this.base = `${prefix}ticket:${pool}:`;
    this.issueScript = luaScript(redis, 'periscopeTicketIssue', 1, ISSUE);
    this.takeScript = luaScript(redis, 'periscopeTicketTake', 1, TAKE);
  }

  get size(): number {
    return this.issued.size;
  }

  /** Only a hash of the ticket names its key: a reader of Redis cannot redeem what it lists. */
  private key(ticket: string): string {
    return `${this.base}${createHash('sha256').update(ticket).digest('base64url')}`;
  }

  async issue(value: T): Promise<IssuedTicket> {
    if (this.issued.size >= this.max) {
      value.release();
      throw new DomainError(
        ERROR_CODE.unavailable,
        `the server holds ${this.max} unused terminal tickets (each lives ${Math.round(this.ttlMs / 1000)} s); try again in a few seconds`,
      );
    }
    const ticket = randomBytes(24).toString('base64url');
    const { release: _release, ...stored } = value;
    try {
      await this.pending.track(this.issueScript(this.key(ticket), this.ttlMs, JSON.stringify(stored)));
    } catch (err) {
      value.release();
      throw new DomainError(
        ERROR_CODE.unavailable,
        `the shared state of the server replicas (Redis) did not answer (${(err as Error).message}); try again in a moment`,
      );
    }
    const expiresAt = Date.now() + this.ttlMs;
    const unused = this.slots.issued(value);
    const timer = setTimeout(() => {
      this.issued.delete(ticket);
      unused();
    }, this.ttlMs + TICKET_SWEEP_MS);
    timer.unref();
    this.issued.set(ticket, { value, timer, unused });
    return { ticket, expiresAt: new Date(expiresAt) };
  }

  async redeem(ticket: string, subject: string, scope: string): Promise<T | undefined> {
    if (!/^[\w-]{1,64}$/.test(ticket)) return undefined;
    let taken: [string, string] | null;
    try {
      taken = (await this.pending.track(this.takeScript(this.key(ticket)))) as [string, string] | null;
    } catch (err) {
      throw new DomainError(
        ERROR_CODE.unavailable,
        `the shared state of the server replicas (Redis) did not answer (${(err as Error).message}); ask for a new ticket in a moment`,
      );
    }
    if (taken === null) return undefined;
    const here = this.issued.get(ticket);
    if (here) {
      this.issued.delete(ticket);
      clearTimeout(here.timer);
    }
    const [raw, nowText] = taken;
    const space = raw.indexOf(' ');
    const expiresAt = Number(raw.slice(0, space));
    let stored: StoredTicket<T> | undefined;
    try {
      stored = JSON.parse(raw.slice(space + 1)) as StoredTicket<T>;
    } catch {
      stored = undefined;
    }
    if (
      stored === undefined ||
      stored.subject !== subject ||
      stored.scope !== scope ||
      !(expiresAt >= Number(nowText))
    ) {
      // Refused: issued here, the slot goes back now; elsewhere, its issuer frees it at expiry.
      here?.unused();
      return undefined;
    }
    let release: () => void;
    try {
      release = await this.slots.adopt(stored, here?.value);
    } catch (err) {
      here?.unused();
      if (err instanceof DomainError) throw err;
      throw new DomainError(
        ERROR_CODE.unavailable,
        `the shared state of the server replicas (Redis) did not answer (${(err as Error).message}); ask for a new ticket in a moment`,
      );
    }
    return { ...stored, release } as T;
  }

  clear(): void {
    for (const [ticket, t] of this.issued) {
      clearTimeout(t.timer);
      t.unused();
      this.redis.del(this.key(ticket)).catch((err: unknown) => {
        this.log.warn(
          { pool: this.pool, err: (err as Error).message },
          'could not drop an unused terminal ticket from Redis; it expires on its own',
        );
      });
    }
    this.issued.clear();
  }

  /** Waits for outstanding Redis calls (at most `deadlineMs`). */
  drain(deadlineMs = 2_000): Promise<void> {
    return this.pending.drain(deadlineMs);
  }
}

/**
 * Terminal tickets of one kind of session (`cluster_shell`, `pod_exec`): in memory without Redis
 * (today's behaviour), else in Redis, redeemable on any replica (`slots` moves the cap slot).
 */
export function ticketStore<T extends TicketBase>(
  shared: SharedState,
  pool: string,
  slots: SlotTransfer<T>,
): TicketStore<T> {
  const r = shared.redisStore;
  if (r === undefined) return new InMemoryTickets<T>();
  return new RedisTickets<T>(pool, r.redis, r.prefix, slots, r.log);
}

interface SlotTicket extends TicketBase {
  sessionId: string;
  cluster: string;
}

/**
 * Cap slots shared in Redis (the cluster shell's and pod exec's): the slot leaves the issuer's
 * heartbeat with the ticket, and the redeeming replica (the issuer too) takes it over; an unused
 * one is freed. A slot whose lease ended before the redemption refuses it (RedisCapSlots.adopt).
 */
export function sharedSlotTransfer<T extends SlotTicket>(caps: () => CapSlots): SlotTransfer<T> {
  const redisCaps = (): RedisCapSlots => {
    const c = caps();
    if (!(c instanceof RedisCapSlots))
      throw new Error('a ticket from Redis needs cap slots in Redis (PERISCOPE_REDIS_URL)');
    return c;
  };
  return {
    issued: (v) => redisCaps().handOver(v.sessionId),
    adopt: (t) => redisCaps().adopt({ sessionId: t.sessionId, subject: t.subject, cluster: t.cluster }),
  };
}
