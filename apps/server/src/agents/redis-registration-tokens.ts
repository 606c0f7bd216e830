import type { Redis } from 'ioredis';

import {
  hashRegistrationToken,
  InMemoryRegistrationTokens,
  newRegistrationToken,
  type Redeemed,
  type RegistrationTokenStore,
  type TokenRefusal,
} from './registration-tokens';
import { LUA_NOW_MS, luaScript, type ScriptCall } from '../shared-state/redis-script';
import type { SharedState } from '../shared-state/shared-state.service';

/** A used or expired token's record stays this long, so a late attempt is logged with its reason. */
const KEEP_AFTER_EXPIRY_MS = 10 * 60_000;

/**
 * KEYS: live set, token. ARGV: ttl ms, cluster, hash, max live, keep ms. Expired members go;
 * past `max` live tokens answers 0; else stores the token's record and answers its expiry (ms).
 */
const MINT = `${LUA_NOW_MS}
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
local exp = now + ttl
redis.call('ZADD', KEYS[1], exp, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], cjson.encode({cluster = ARGV[2], exp = exp, used = false}), 'PX', ttl + tonumber(ARGV[5]))
return exp`;

/**
 * KEYS: token. ARGV: cluster. Check and burn in one step: the first redeemer burns it, every
 * later one reads `used`. A wrong cluster burns it too (as in memory).
 */
const REDEEM = `${LUA_NOW_MS}
local v = redis.call('GET', KEYS[1])
if not v then return 'unknown' end
local e = cjson.decode(v)
if e.used then return 'used' end
e.used = true
redis.call('SET', KEYS[1], cjson.encode(e), 'KEEPTTL')
if e.exp <= now then return 'expired' end
if e.cluster ~= ARGV[1] then return 'wrong_cluster' end
return 'ok'`;

/**
 * Agent registration tokens in Redis: minted through one replica, redeemed exactly once through
 * any. Only the SHA-256 of a token names its key (a reader of Redis cannot register with what it
 * lists); the live ones are bounded by a sorted set scored by expiry.
 */
export class RedisRegistrationTokens implements RegistrationTokenStore {
  private readonly mintScript: ScriptCall;
  private readonly redeemScript: ScriptCall;
  private readonly base: string;

  constructor(
    redis: Redis,
    prefix: string,
    private readonly ttlMs = 15 * 60_000,
    private readonly maxLive = 1000,
  ) {
    this.base = `${prefix}regtoken:`;
    this.mintScript = luaScript(redis, 'periscopeRegTokenMint', 2, MINT);
    this.redeemScript = luaScript(redis, 'periscopeRegTokenRedeem', 1, REDEEM);
  }

  async mint(cluster: string): Promise<{ token: string; expiresAt: Date }> {
    const { token, hash } = newRegistrationToken();
    const exp = Number(
      await this.mintScript(
        `${this.base}live`,
        `${this.base}t:${hash}`,
        this.ttlMs,
        cluster,
        hash,
        this.maxLive,
        KEEP_AFTER_EXPIRY_MS,
      ),
    );
    if (exp === 0)
      throw new Error(`too many live registration tokens (${this.maxLive}); wait for some to expire`);
    return { token, expiresAt: new Date(exp) };
  }

  async redeem(token: string, cluster: string): Promise<Redeemed> {
    const r = String(await this.redeemScript(`${this.base}t:${hashRegistrationToken(token)}`, cluster));
    return r === 'ok' ? { ok: true } : { ok: false, reason: r as TokenRefusal };
  }
}

/** Registration tokens: in memory without Redis (today's behaviour), else in Redis. */
export function registrationTokenStore(shared: SharedState): RegistrationTokenStore {
  const r = shared.redisStore;
  return r === undefined ? new InMemoryRegistrationTokens() : new RedisRegistrationTokens(r.redis, r.prefix);
}
