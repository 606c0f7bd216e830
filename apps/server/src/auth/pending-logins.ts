import { randomBytes } from 'node:crypto';

/** What the callback needs to finish a sign-in started by GET /api/auth/login. */
export interface PendingLogin {
  state: string;
  nonce: string;
  codeVerifier: string;
  returnTo: string;
}

/**
 * Sign-ins in flight, keyed by a random id kept in a short-lived cookie. Bounded (the oldest
 * entry is dropped when full), every entry expires after `ttlMs` and can be taken only once.
 */
export class PendingLogins {
  private readonly entries = new Map<string, { login: PendingLogin; expiresAt: number }>();

  constructor(
    private readonly opts: { ttlMs: number; max: number },
    private readonly now: () => number = () => Date.now(),
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get ttlMs(): number {
    return this.opts.ttlMs;
  }

  put(login: PendingLogin): string {
    this.sweep();
    while (this.entries.size >= this.opts.max) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    const id = randomBytes(24).toString('base64url');
    this.entries.set(id, { login, expiresAt: this.now() + this.opts.ttlMs });
    return id;
  }

  /** The pending sign-in of this id, removed from the store; undefined when unknown or expired. */
  take(id: string | undefined): PendingLogin | undefined {
    if (id === undefined) return undefined;
    const e = this.entries.get(id);
    if (!e) return undefined;
    this.entries.delete(id);
    return e.expiresAt > this.now() ? e.login : undefined;
  }

  /** Drops expired entries (insertion order is expiry order, so stop at the first live one). */
  private sweep(): void {
    const t = this.now();
    for (const [id, e] of this.entries) {
      if (e.expiresAt > t) break;
      this.entries.delete(id);
    }
  }
}
