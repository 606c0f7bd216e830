import { randomBytes } from 'node:crypto';

import type { TierName } from '../config/server-env';

export interface Principal {
  subject: string;
  email: string;
  groups: string[];
  tier: TierName | undefined;
}

interface Session {
  principal: Principal;
  createdAt: number;
  lastActivity: number;
}

/**
 * Server-side login sessions keyed by a random cookie value. Bounded: the oldest session is
 * evicted when full; idle and absolute expiry are enforced on every lookup.
 */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly opts: { idleMs: number; absoluteMs: number; max: number },
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  create(principal: Principal): string {
    if (this.sessions.size >= this.opts.max) {
      const oldest = this.sessions.keys().next().value;
      if (oldest !== undefined) this.sessions.delete(oldest);
    }
    const id = randomBytes(32).toString('base64url');
    const t = this.now();
    this.sessions.set(id, { principal, createdAt: t, lastActivity: t });
    return id;
  }

  get(id: string | undefined): Principal | undefined {
    if (id === undefined) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    const t = this.now();
    if (t - s.lastActivity > this.opts.idleMs || t - s.createdAt > this.opts.absoluteMs) {
      this.sessions.delete(id);
      return undefined;
    }
    s.lastActivity = t;
    return s.principal;
  }

  delete(id: string | undefined): void {
    if (id !== undefined) this.sessions.delete(id);
  }
}
