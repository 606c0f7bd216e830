import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

import { ERROR_CODE } from '@periscope/protocol';
import type { Redis } from 'ioredis';

import { deriveKey } from './login-cookie';
import {
  InMemoryLoginSessions,
  MAX_SESSIONS_PER_SUBJECT,
  refreshTime,
  SessionStore,
  type LoginSessionStore,
  type Principal,
  type ProviderTokens,
  type RefreshFn,
} from './session-store';
import { DomainError } from '../common/domain-error';
import { sharedStateUnavailable } from './shared-state-unavailable';
import { luaScript, type ScriptCall, type StateLog } from '../shared-state/redis-script';
import type { SharedState } from '../shared-state/shared-state.service';

/** A refresh by one replica holds the session's refresh lock at most this long. */
const REFRESH_LOCK_MS = 30_000;
/** Sessions this replica keeps in view (each re-read from Redis at every request that uses it). */
const VIEW_MAX = 10_000;

/**
 * KEYS: all, subject set, new session. ARGV: hash, data, idle ms, absolute ms, max, per subject,
 * now, session key prefix. The subject's oldest sessions past its bound end first (as in memory);
 * when the table is full, members whose session is gone (idle expiry) are dropped, then it
 * refuses ({0}); else the session is stored ({1, count}). Sessions are hashes: c (created), a
 * (last activity), d (the JSON record, never parsed here).
 */
const CREATE = `local now = tonumber(ARGV[7])
local idle = tonumber(ARGV[3])
local abs = tonumber(ARGV[4])
local pre = ARGV[8]
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', pre .. m) == 0 then
    redis.call('ZREM', KEYS[2], m)
    redis.call('ZREM', KEYS[1], m)
  end
end
while redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  redis.call('DEL', pre .. oldest)
  redis.call('ZREM', KEYS[2], oldest)
  redis.call('ZREM', KEYS[1], oldest)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if redis.call('EXISTS', pre .. m) == 0 then redis.call('ZREM', KEYS[1], m) end
  end
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then return {0, redis.call('ZCARD', KEYS[1])} end
end
redis.call('HSET', KEYS[3], 'c', now, 'a', now, 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[3], math.min(idle, abs))
redis.call('ZADD', KEYS[1], now + abs, ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
if redis.call('PTTL', KEYS[2]) < abs then redis.call('PEXPIRE', KEYS[2], abs) end
if redis.call('PTTL', KEYS[1]) < abs then redis.call('PEXPIRE', KEYS[1], abs) end
return {1, redis.call('ZCARD', KEYS[1])}`;

/**
 * KEYS: session. ARGV: now, idle ms, absolute ms. A live session's activity is now (its key lives
 * one idle timeout more, never past the absolute one): {created, data}; an expired one ends: nil.
 */
const TOUCH = `local now = tonumber(ARGV[1])
local v = redis.call('HMGET', KEYS[1], 'c', 'a', 'd')
if not v[1] or not v[3] then return nil end
local c = tonumber(v[1])
local idle = tonumber(ARGV[2])
local abs = tonumber(ARGV[3])
if now - tonumber(v[2]) > idle or now - c > abs then
  redis.call('DEL', KEYS[1])
  return nil
end
redis.call('HSET', KEYS[1], 'a', now)
redis.call('PEXPIRE', KEYS[1], math.max(1, math.min(idle, c + abs - now)))
return {v[1], v[3]}`;

/** KEYS: session. ARGV: data. Replaces the record of a session that still exists: 1, else 0. */
const UPDATE = `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[1])
return 1`;

/** KEYS: session, all. ARGV: hash. Ends the session: its record, or nil when there was none. */
const END = `local d = redis.call('HGET', KEYS[1], 'd')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return d`;

/** What Redis holds of a session (its `d` field): the provider tokens sealed. */
interface Stored {
  principal: Principal;
  /** AES-256-GCM of the provider tokens (base64url); absent when there are none (dev sign-ins) */
  tokens?: string;
  refreshAt?: number;
}

interface Viewed {
  principal: Principal;
  createdAt: number;
  refreshAt: number | undefined;
  sealed: string | undefined;
}

/**
 * The provider tokens of a session, sealed before they reach Redis: AES-256-GCM under a key
 * derived from PERISCOPE_SESSION_KEY (which Redis never holds), bound to the session by the
 * additional data (a record copied to another session does not open).
 */
export class TokenSealer {
  private readonly key: Buffer;

  constructor(sessionKey: Buffer) {
    this.key = deriveKey(sessionKey, 'periscope-session-tokens-v1');
  }

  seal(tokens: ProviderTokens, sessionHash: string): string | undefined {
    if (tokens.refreshToken === undefined && tokens.idToken === undefined && tokens.expiresAt === undefined)
      return undefined;
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(Buffer.from(sessionHash));
    const body = Buffer.concat([c.update(JSON.stringify(tokens)), c.final()]);
    return Buffer.concat([iv, body, c.getAuthTag()]).toString('base64url');
  }

  /** The tokens, or none when the record does not open (another key: they cannot be used). */
  open(sealed: string | undefined, sessionHash: string): ProviderTokens {
    if (sealed === undefined) return {};
    try {
      const raw = Buffer.from(sealed, 'base64url');
      const d = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
      d.setAAD(Buffer.from(sessionHash));
      d.setAuthTag(raw.subarray(raw.length - 16));
      const plain = Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]);
      return JSON.parse(plain.toString('utf8')) as ProviderTokens;
    } catch {
      return {};
    }
  }
}

/**
 * Login sessions in Redis, shared by every replica: a sign-in through one is valid on all, with
 * the idle and absolute expiry of the in-memory store (checked in Redis at every read), its
 * bounds (the table's and one person's), and one refresh of the provider tokens at a time (a
 * lock in Redis; a replica that finds another refreshing answers the session as it is).
 *
 * Keys carry only a SHA-256 of the cookie value (a reader of Redis cannot sign in with what it
 * lists); the provider tokens are sealed ({@link TokenSealer}). Each replica keeps a bounded view
 * of the sessions it read, for synchronous checks right after a read (WebSocket upgrades are
 * read first: AuthService.preload).
 */
export class RedisLoginSessions implements LoginSessionStore {
  private readonly view = new Map<string, Viewed>();
  private readonly refreshing = new Map<string, Promise<Principal | undefined>>();
  private readonly createScript: ScriptCall;
  private readonly touchScript: ScriptCall;
  private readonly updateScript: ScriptCall;
  private readonly endScript: ScriptCall;
  private readonly base: string;
  private counted = 0;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    private readonly sealer: TokenSealer,
    private readonly opts: { idleMs: number; absoluteMs: number; max: number; maxPerSubject?: number },
    private readonly log: StateLog,
    private readonly now: () => number = () => Date.now(),
  ) {
    // One hash tag: every key of the sessions lives in one slot (Redis Cluster runs the scripts).
    this.base = `${prefix}{login}:`;
    this.createScript = luaScript(redis, 'periscopeLoginCreate', 3, CREATE);
    this.touchScript = luaScript(redis, 'periscopeLoginTouch', 1, TOUCH);
    this.updateScript = luaScript(redis, 'periscopeLoginUpdate', 1, UPDATE);
    this.endScript = luaScript(redis, 'periscopeLoginEnd', 2, END);
  }

  get size(): number {
    return this.counted;
  }

  get max(): number {
    return this.opts.max;
  }

  private static hash(id: string): string {
    return createHash('sha256').update(id).digest('base64url');
  }

  private key(hash: string): string {
    return `${this.base}s:${hash}`;
  }

  async create(principal: Principal, tokens: ProviderTokens = {}): Promise<string> {
    const id = randomBytes(32).toString('base64url');
    const hash = RedisLoginSessions.hash(id);
    const t = this.now();
    const refreshAt = refreshTime(tokens, t);
    const sealed = this.sealer.seal(tokens, hash);
    const stored: Stored = {
      principal,
      ...(sealed !== undefined ? { tokens: sealed } : {}),
      ...(refreshAt !== undefined ? { refreshAt } : {}),
    };
    const [ok, count] = (await this.call(this.createScript)(
      `${this.base}all`,
      `${this.base}u:${principal.subject}`,
      this.key(hash),
      hash,
      JSON.stringify(stored),
      this.opts.idleMs,
      this.opts.absoluteMs,
      this.opts.max,
      this.opts.maxPerSubject ?? MAX_SESSIONS_PER_SUBJECT,
      t,
      `${this.base}s:`,
    )) as [unknown, unknown];
    this.counted = Number(count);
    if (Number(ok) !== 1)
      throw new DomainError(
        ERROR_CODE.unavailable,
        `the server holds as many sign-ins as it keeps (${this.opts.max}); new sign-ins are refused until sessions end (idle sessions end after ${Math.round(this.opts.idleMs / 60_000)} minutes). Try again later, or ask an administrator`,
      );
    this.remember(id, { principal, createdAt: t, refreshAt, sealed });
    return id;
  }

  /** A script whose failure (Redis away) is 503 E_UNAVAILABLE, never an answer such as "signed out". */
  private call(script: ScriptCall): ScriptCall {
    return async (...args) => {
      try {
        return await script(...args);
      } catch (err) {
        throw sharedStateUnavailable(err);
      }
    };
  }

  get(id: string | undefined): Principal | undefined {
    if (id === undefined) return undefined;
    const v = this.view.get(id);
    if (v === undefined) return undefined;
    const t = this.now();
    if (t - v.createdAt > this.opts.absoluteMs) {
      this.view.delete(id);
      return undefined;
    }
    return v.principal;
  }

  /** Reads the session from Redis (and marks its activity), or drops it from view when it ended. */
  load(id: string | undefined): Promise<void> {
    return this.read(id).then(() => undefined);
  }

  private async read(id: string | undefined): Promise<Viewed | undefined> {
    if (id === undefined || id.length > 200) return undefined;
    const hash = RedisLoginSessions.hash(id);
    let got: [string, string] | null;
    try {
      got = (await this.touchScript(this.key(hash), this.now(), this.opts.idleMs, this.opts.absoluteMs)) as
        [string, string] | null;
    } catch (err) {
      // Redis away: no stale yes from the view, and no "signed out" either (that would send the
      // person to sign in again): 503 E_UNAVAILABLE; the session waits in Redis for its return.
      this.view.delete(id);
      throw sharedStateUnavailable(err);
    }
    if (got === null) {
      this.view.delete(id);
      return undefined;
    }
    let stored: Stored;
    try {
      stored = JSON.parse(got[1]) as Stored;
    } catch {
      this.view.delete(id);
      return undefined;
    }
    const v: Viewed = {
      principal: stored.principal,
      createdAt: Number(got[0]),
      refreshAt: stored.refreshAt,
      sealed: stored.tokens,
    };
    this.remember(id, v);
    return v;
  }

  private remember(id: string, v: Viewed): void {
    this.view.delete(id);
    if (this.view.size >= VIEW_MAX) {
      const oldest = this.view.keys().next().value;
      if (oldest !== undefined) this.view.delete(oldest);
    }
    this.view.set(id, v);
  }

  refreshDue(id: string | undefined): boolean {
    const v = id === undefined ? undefined : this.view.get(id);
    return v !== undefined && v.refreshAt !== undefined && this.now() >= v.refreshAt;
  }

  async current(id: string | undefined, refresh: RefreshFn): Promise<Principal | undefined> {
    if (id === undefined) return undefined;
    const running = this.refreshing.get(id);
    if (running) return running;
    const v = await this.read(id);
    if (!v) return undefined;
    if (v.refreshAt === undefined || this.now() < v.refreshAt) return v.principal;
    const again = this.refreshing.get(id);
    if (again) return again;
    const run = this.refreshOnce(id, v, refresh).finally(() => {
      this.refreshing.delete(id);
    });
    this.refreshing.set(id, run);
    return run;
  }

  private async refreshOnce(id: string, v: Viewed, refresh: RefreshFn): Promise<Principal | undefined> {
    const hash = RedisLoginSessions.hash(id);
    const lock = `${this.base}r:${hash}`;
    // One replica refreshes (the provider may rotate the refresh token: a second use would fail).
    if ((await this.redis.set(lock, '1', 'PX', REFRESH_LOCK_MS, 'NX').catch(() => null)) !== 'OK')
      return v.principal;
    try {
      const r = await refresh(this.sealer.open(v.sealed, hash), v.principal).catch(() => null);
      if (r === null) {
        await this.delete(id);
        return undefined;
      }
      const refreshAt = refreshTime(r.tokens, this.now());
      const sealed = this.sealer.seal(r.tokens, hash);
      const stored: Stored = {
        principal: r.principal,
        ...(sealed !== undefined ? { tokens: sealed } : {}),
        ...(refreshAt !== undefined ? { refreshAt } : {}),
      };
      // Signed out meanwhile: do not bring the session back.
      let updated: unknown;
      try {
        updated = await this.updateScript(this.key(hash), JSON.stringify(stored));
      } catch (err) {
        this.log.warn(
          { err: (err as Error).message },
          'could not store a refreshed login session in Redis; the request answers 503',
        );
        throw sharedStateUnavailable(err);
      }
      if (Number(updated) !== 1) {
        this.view.delete(id);
        return undefined;
      }
      this.remember(id, { principal: r.principal, createdAt: v.createdAt, refreshAt, sealed });
      return r.principal;
    } finally {
      await this.redis.del(lock).catch(() => undefined);
    }
  }

  expiresAt(id: string | undefined): number | undefined {
    const v = id === undefined ? undefined : this.view.get(id);
    return v ? v.createdAt + this.opts.absoluteMs : undefined;
  }

  async delete(id: string | undefined): Promise<ProviderTokens | undefined> {
    if (id === undefined || id.length > 200) return undefined;
    this.view.delete(id);
    const hash = RedisLoginSessions.hash(id);
    const d = (await this.call(this.endScript)(this.key(hash), `${this.base}all`, hash)) as string | null;
    if (d === null) return undefined;
    return this.sealer.open((JSON.parse(d) as Stored).tokens, hash);
  }
}

/**
 * Login sessions: in memory without Redis (today's behaviour), else in Redis, their provider
 * tokens sealed with PERISCOPE_SESSION_KEY (required in oidc mode with Redis; in dev mode, where
 * sessions hold no provider tokens, a random key of this process when unset).
 */
export function loginSessionStore(
  shared: SharedState | undefined,
  sessionSecret: string | undefined,
  opts: { idleMs: number; absoluteMs: number; max: number },
): LoginSessionStore {
  const r = shared?.redisStore;
  if (r === undefined) return new InMemoryLoginSessions(new SessionStore(opts));
  const key = sessionSecret === undefined ? randomBytes(32) : Buffer.from(sessionSecret, 'base64');
  return new RedisLoginSessions(r.redis, r.prefix, new TokenSealer(key), opts, r.log);
}
