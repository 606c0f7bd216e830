import { randomBytes } from 'node:crypto';

import { ERROR_CODE } from '@periscope/protocol';

import { DomainError } from '../common/domain-error';
import type { TierName } from '../config/server-env';

export interface Principal {
  subject: string;
  email: string;
  groups: string[];
  tier: TierName | undefined;
}

/**
 * The OpenID provider's tokens of a session. They stay on the server: never in a cookie, a
 * response body or a log line.
 */
export interface ProviderTokens {
  refreshToken?: string;
  /** Kept for the id_token_hint of RP-initiated logout. */
  idToken?: string;
  /** When the access or ID token expires (epoch ms, the earlier of the two). */
  expiresAt?: number;
}

/** What a refresh produces: the (possibly changed) principal and the new tokens. */
export interface Refreshed {
  principal: Principal;
  tokens: ProviderTokens;
}

interface Session {
  principal: Principal;
  createdAt: number;
  lastActivity: number;
  tokens: ProviderTokens;
  /** When to refresh the provider tokens (a little before they expire); undefined: never. */
  refreshAt: number | undefined;
  refreshing: Promise<Principal | undefined> | undefined;
}

/** How a refresh is asked of the provider (AuthService.refresh): null ends the session. */
export type RefreshFn = (tokens: ProviderTokens, principal: Principal) => Promise<Refreshed | null>;

/**
 * The login-session port: {@link InMemoryLoginSessions} (one replica: today's behaviour) or
 * sessions in Redis (auth/redis-login-sessions.ts), so a sign-in through one replica is
 * valid on every other, with the same idle and absolute expiry and one refresh at a time.
 */
export interface LoginSessionStore {
  /** sessions held (in Redis: as last counted by this replica) */
  readonly size: number;
  readonly max: number;
  /** Starts a session; 503 E_UNAVAILABLE when the table is full of live sessions. */
  create(principal: Principal, tokens?: ProviderTokens): Promise<string>;
  /** The principal of a live session, as this replica last read it (synchronous). */
  get(id: string | undefined): Principal | undefined;
  /**
   * Reads the session from the shared store into this replica's view (before a synchronous
   * check such as a WebSocket upgrade); undefined when there is nothing to read (in memory).
   */
  load(id: string | undefined): Promise<void> | undefined;
  refreshDue(id: string | undefined): boolean;
  /** The principal, refreshing the provider tokens first when due (see SessionStore.current). */
  current(id: string | undefined, refresh: RefreshFn): Promise<Principal | undefined>;
  expiresAt(id: string | undefined): number | undefined;
  /** Ends a session; answers its provider tokens (for RP-initiated logout). */
  delete(id: string | undefined): Promise<ProviderTokens | undefined>;
}

/** The in-memory adapter: {@link SessionStore} of this one process, as it always was. */
export class InMemoryLoginSessions implements LoginSessionStore {
  constructor(readonly store: SessionStore) {}

  get size(): number {
    return this.store.size;
  }

  get max(): number {
    return this.store.max;
  }

  create(principal: Principal, tokens?: ProviderTokens): Promise<string> {
    // A throw (a bound reached) becomes the rejection.
    return new Promise((resolve) => {
      resolve(this.store.create(principal, tokens));
    });
  }

  get(id: string | undefined): Principal | undefined {
    return this.store.get(id);
  }

  load(): undefined {
    return undefined;
  }

  refreshDue(id: string | undefined): boolean {
    return this.store.refreshDue(id);
  }

  current(id: string | undefined, refresh: RefreshFn): Promise<Principal | undefined> {
    return this.store.current(id, refresh);
  }

  expiresAt(id: string | undefined): number | undefined {
    return this.store.expiresAt(id);
  }

  delete(id: string | undefined): Promise<ProviderTokens | undefined> {
    return Promise.resolve(this.store.delete(id));
  }
}

/** Refresh this long before expiry, at most a quarter of the token lifetime. */
const REFRESH_EARLY_MS = 30_000;

/** Sign-ins one person may hold at once (browsers, devices); the next one ends their oldest. */
export const MAX_SESSIONS_PER_SUBJECT = 20;

/**
 * Server-side login sessions keyed by a random cookie value. Bounded without ever pushing
 * someone out to make room: when the table is full (after dropping expired sessions) a new
 * sign-in is refused (503 E_UNAVAILABLE); one person holds at most `maxPerSubject` sessions, and
 * their own oldest ends when they sign in once more. Idle and absolute expiry are enforced on
 * every lookup. A session of an OpenID sign-in also holds the provider's refresh token and
 * token expiry, and is refreshed at most once at a time (concurrent requests share one refresh).
 */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  /** session ids per subject, oldest first */
  private readonly bySubject = new Map<string, Set<string>>();

  constructor(
    private readonly opts: { idleMs: number; absoluteMs: number; max: number; maxPerSubject?: number },
    private readonly now: () => number = () => Date.now(),
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  get max(): number {
    return this.opts.max;
  }

  /** Starts a session; throws 503 E_UNAVAILABLE when the table is full of live sessions. */
  create(principal: Principal, tokens: ProviderTokens = {}): string {
    const mine = this.bySubject.get(principal.subject);
    const perSubject = this.opts.maxPerSubject ?? MAX_SESSIONS_PER_SUBJECT;
    while (mine !== undefined && mine.size >= perSubject) {
      const oldest = mine.values().next().value;
      if (oldest === undefined) break;
      this.delete(oldest);
    }
    if (this.sessions.size >= this.opts.max) this.dropExpired();
    if (this.sessions.size >= this.opts.max)
      throw new DomainError(
        ERROR_CODE.unavailable,
        `the server holds as many sign-ins as it keeps (${this.opts.max}); new sign-ins are refused until sessions end (idle sessions end after ${Math.round(this.opts.idleMs / 60_000)} minutes). Try again later, or ask an administrator`,
      );
    const id = randomBytes(32).toString('base64url');
    const t = this.now();
    let ids = this.bySubject.get(principal.subject);
    if (!ids) this.bySubject.set(principal.subject, (ids = new Set()));
    ids.add(id);
    this.sessions.set(id, {
      principal,
      createdAt: t,
      lastActivity: t,
      tokens,
      refreshAt: this.refreshAt(tokens, t),
      refreshing: undefined,
    });
    return id;
  }

  get(id: string | undefined): Principal | undefined {
    return this.live(id)?.principal;
  }

  /** Whether the session's provider tokens have expired (or nearly) and a refresh token exists. */
  refreshDue(id: string | undefined): boolean {
    const s = id === undefined ? undefined : this.sessions.get(id);
    return s !== undefined && s.refreshAt !== undefined && this.now() >= s.refreshAt;
  }

  /**
   * The principal of a session, refreshing its provider tokens first when they are due. One
   * refresh runs per session at a time; concurrent callers wait for it. When `refresh` answers
   * null or throws, the session ends and this answers undefined.
   */
  async current(id: string | undefined, refresh: RefreshFn): Promise<Principal | undefined> {
    const s = this.live(id);
    if (id === undefined || !s) return undefined;
    if (s.refreshing) return s.refreshing;
    if (s.refreshAt === undefined || this.now() < s.refreshAt) return s.principal;
    const run = async (): Promise<Principal | undefined> => {
      try {
        // Always asynchronous, so `refreshing` is set before this settles.
        const r = await Promise.resolve().then(() => refresh(s.tokens, s.principal));
        if (r === null) {
          if (this.sessions.get(id) === s) this.delete(id);
          return undefined;
        }
        // Signed out meanwhile: do not bring the session back.
        if (this.sessions.get(id) !== s) return undefined;
        s.principal = r.principal;
        s.tokens = r.tokens;
        s.refreshAt = this.refreshAt(r.tokens, this.now());
        return s.principal;
      } catch {
        if (this.sessions.get(id) === s) this.delete(id);
        return undefined;
      } finally {
        s.refreshing = undefined;
      }
    };
    s.refreshing = run();
    return s.refreshing;
  }

  /** When the session ends at the latest (absolute timeout), epoch ms; undefined when not live. */
  expiresAt(id: string | undefined): number | undefined {
    const s = id === undefined ? undefined : this.sessions.get(id);
    return s ? s.createdAt + this.opts.absoluteMs : undefined;
  }

  /** Ends a session; answers its provider tokens (for RP-initiated logout). */
  delete(id: string | undefined): ProviderTokens | undefined {
    if (id === undefined) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    this.sessions.delete(id);
    const ids = this.bySubject.get(s.principal.subject);
    ids?.delete(id);
    if (ids?.size === 0) this.bySubject.delete(s.principal.subject);
    return s.tokens;
  }

  private expired(s: Session, t: number): boolean {
    return t - s.lastActivity > this.opts.idleMs || t - s.createdAt > this.opts.absoluteMs;
  }

  /** Drops every expired session (only when the table is full: a full scan). */
  private dropExpired(): void {
    const t = this.now();
    for (const [id, s] of this.sessions) if (this.expired(s, t)) this.delete(id);
  }

  private live(id: string | undefined): Session | undefined {
    if (id === undefined) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    const t = this.now();
    if (this.expired(s, t)) {
      this.delete(id);
      return undefined;
    }
    s.lastActivity = t;
    return s;
  }

  private refreshAt(tokens: ProviderTokens, t: number): number | undefined {
    return refreshTime(tokens, t);
  }
}

/** When to refresh the provider tokens (a little before they expire); undefined: never. */
export function refreshTime(tokens: ProviderTokens, t: number): number | undefined {
  if (tokens.refreshToken === undefined || tokens.expiresAt === undefined) return undefined;
  const early = Math.min(REFRESH_EARLY_MS, Math.max(0, (tokens.expiresAt - t) / 4));
  return tokens.expiresAt - early;
}
