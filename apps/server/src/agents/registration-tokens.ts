import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Why a token was refused; only ever logged, never told to the caller. */
export type TokenRefusal = 'unknown' | 'expired' | 'used' | 'wrong_cluster';

interface Entry {
  cluster: string;
  expiresAt: number;
  used: boolean;
}

const TOKEN_BYTES = 32;

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

  private static hash(token: string): string {
    return createHash('sha256').update(token).digest('hex');
  }

  get size(): number {
    return this.entries.size;
  }

  mint(cluster: string): { token: string; expiresAt: Date } {
    this.sweep();
    if (this.entries.size >= this.maxLive)
      throw new Error(`too many live registration tokens (${this.maxLive}); wait for some to expire`);
    const token = `psc_${randomBytes(TOKEN_BYTES).toString('base64url')}`;
    const expiresAt = this.now() + this.ttlMs;
    this.entries.set(RegistrationTokens.hash(token), { cluster, expiresAt, used: false });
    return { token, expiresAt: new Date(expiresAt) };
  }

  /** Burns the token and says whether it was valid for `cluster`. */
  redeem(token: string, cluster: string): { ok: true } | { ok: false; reason: TokenRefusal } {
    const key = RegistrationTokens.hash(token);
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
