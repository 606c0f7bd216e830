import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Why a token was refused; only ever logged, never told to the caller. */
export type TokenRefusal = 'unknown' | 'expired' | 'used' | 'wrong_cluster';

interface Entry {
  cluster: string;
  expiresAt: number;
  used: boolean;
}

const TOKEN_BYTES = 32;

export type Redeemed = { ok: true } | { ok: false; reason: TokenRefusal };

/**
 * The registration-token port: {@link RegistrationTokens} in memory (one replica: today's
 * behaviour) or in Redis (agents/redis-registration-tokens.ts), where a token minted
 * through one replica is redeemed once through any.
 */
export interface RegistrationTokenStore {
  mint(cluster: string): Promise<{ token: string; expiresAt: Date }>;
  /** Burns the token (atomically: one of concurrent redeemers wins) and says whether it was valid. */
  redeem(token: string, cluster: string): Promise<Redeemed>;
}

/** A new token (the secret the admin hands to the agent) and the hash that names it when stored. */
export function newRegistrationToken(): { token: string; hash: string } {
  const token = `psc_${randomBytes(TOKEN_BYTES).toString('base64url')}`;
  return { token, hash: hashRegistrationToken(token) };
}

export function hashRegistrationToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The in-memory adapter: {@link RegistrationTokens} of this one process. */
export class InMemoryRegistrationTokens implements RegistrationTokenStore {
  constructor(readonly tokens: RegistrationTokens = new RegistrationTokens()) {}

  mint(cluster: string): Promise<{ token: string; expiresAt: Date }> {
    // A throw (a bound reached) becomes the rejection.
    return new Promise((resolve) => {
      resolve(this.tokens.mint(cluster));
    });
  }

  redeem(token: string, cluster: string): Promise<Redeemed> {
    return Promise.resolve(this.tokens.redeem(token, cluster));
  }
}

/**
 * Single-use agent registration tokens bound to a cluster name. Only a hash of each token is kept.
 * Redeeming is atomic (synchronous check-and-burn); a wrong cluster name burns the token too.
 */
export class RegistrationTokens {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlMs = 15 * 60_000,
    private readonly maxLive = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  mint(cluster: string): { token: string; expiresAt: Date } {
    this.sweep();
    if (this.entries.size >= this.maxLive)
      throw new Error(`too many live registration tokens (${this.maxLive}); wait for some to expire`);
    const { token, hash } = newRegistrationToken();
    const expiresAt = this.now() + this.ttlMs;
    this.entries.set(hash, { cluster, expiresAt, used: false });
    return { token, expiresAt: new Date(expiresAt) };
  }

  /** Burns the token and says whether it was valid for `cluster`. */
  redeem(token: string, cluster: string): Redeemed {
    const key = hashRegistrationToken(token);
    const entry = this.entries.get(key);
    if (!entry) return { ok: false, reason: 'unknown' };
    if (entry.used) return { ok: false, reason: 'used' };
    entry.used = true;
    if (entry.expiresAt <= this.now()) return { ok: false, reason: 'expired' };
    const a = Buffer.from(entry.cluster);
    const b = Buffer.from(cluster);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return { ok: false, reason: 'wrong_cluster' };
    return { ok: true };
  }

  /** Forgets expired tokens and used ones older than their TTL. */
  sweep(): void {
    const now = this.now();
    for (const [k, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(k);
  }
}
