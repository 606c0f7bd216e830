import { createHash } from 'node:crypto';

import {
  Inject,
  Injectable,
  Logger,
  Optional,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { Metrics } from '@periscope/observability';
import { ERROR_CODE } from '@periscope/protocol';
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge } from 'prom-client';

import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import type { TierName } from '../config/server-env';
import { isAllowed } from './claims';
import { OidcService, oidcErrorText, type Identity } from './oidc.service';
import { LocalNewsChannel, RedisNewsChannel, type NewsChannel } from '../shared-state/redis-channel';
import { loginSessionStore } from './redis-login-sessions';
import { SharedState } from '../shared-state/shared-state.service';
import { isSharedStateUnavailable, OutageLog } from './shared-state-unavailable';
import type { LoginSessionStore, Principal, ProviderTokens, Refreshed } from './session-store';
import { isSystemName, withoutSystemGroups } from '../common/system-names';
import { resolveTier, tierAtLeast } from './tiers';

export function readCookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/**
 * A stable handle of one sign-in (login session) that is not its secret: terminals record it, so
 * that signing out ends that sign-in's terminals. The cookie value itself never leaves the store.
 */
export function loginIdOf(sessionCookie: string): string {
  return createHash('sha256').update(sessionCookie).digest('base64url').slice(0, 22);
}

/** Why a sign-in ended, for those who act on it (its terminals end too). */
export type LoginEnd = 'signed_out' | 'refresh_refused';

/** What one replica tells the others about a sign-in (their terminals of it follow). */
type LoginNews =
  | { ended: { loginId: string; why: LoginEnd } }
  | { changed: { loginId: string; before: Principal; after: Principal } };

/** Who is calling: sessions (with silent OIDC refresh), tiers and the dev-mode users. */
@Injectable()
export class AuthService implements OnApplicationBootstrap, OnApplicationShutdown {
  /** in memory, or in Redis: a sign-in through one replica is valid on every other */
  readonly sessions: LoginSessionStore;
  private readonly log = new Logger('auth');
  private readonly refusedSignIns: Counter<'reason'> | undefined;
  private readonly endListeners: ((loginId: string, why: LoginEnd) => void)[] = [];
  private readonly changeListeners: ((loginId: string, before: Principal, after: Principal) => void)[] = [];
  /** several replicas: a sign-out or a change at refresh reaches the terminals on every replica */
  private readonly news: NewsChannel<LoginNews>;
  /**
   * Requests whose sign-in could not be read because Redis did not answer: their synchronous
   * checks answer that 503, not a 401 "sign in first". Weak: it goes with the request.
   */
  private readonly unreadable = new WeakMap<IncomingMessage, DomainError>();
  private readonly outage = new OutageLog();

  constructor(
    @Inject(SERVER_CONFIG) readonly config: ServerConfig,
    readonly oidc: OidcService,
    @Optional() metrics?: Metrics,
    @Optional() shared?: SharedState,
  ) {
    const s = config.auth.session;
    const sessions = (this.sessions = loginSessionStore(shared, config.sharedState.sessionSecret, {
      idleMs: s.idleTimeoutSeconds * 1000,
      absoluteMs: s.absoluteTimeoutSeconds * 1000,
      max: 10_000,
    }));
    const r = shared?.redisStore;
    this.news =
      r === undefined
        ? new LocalNewsChannel()
        : new RedisNewsChannel<LoginNews>(r.redis, r.prefix, 'login', r.replica, r.log);
    if (metrics) {
      this.refusedSignIns = new Counter({
        name: 'periscope_auth_sign_ins_refused_total',
        help: 'Sign-ins refused by a capacity bound, by reason (sessions_full: the session table is full)',
        labelNames: ['reason'],
        registers: [metrics.registry],
      });
      new Gauge({
        name: 'periscope_auth_sessions',
        help: 'Sign-in sessions the server holds (including idle ones not yet swept)',
        registers: [metrics.registry],
        collect() {
          this.set(sessions.size);
        },
      });
    }
  }

  /**
   * The session cookie. Behind https it carries the `__Host-` prefix: the browser then keeps it
   * only when Secure, Path=/ and without Domain, so no sibling subdomain can set or shadow it
   * (cookie tossing). Plain http (local use) keeps the configured name.
   */
  get cookieName(): string {
    const name = this.config.auth.session.cookieName;
    return this.secureCookies ? `__Host-${name}` : name;
  }

  /**
   * The short-lived cookie that ties an OIDC callback to the browser that started the sign-in
   * (path /api/auth, so `__Secure-` rather than `__Host-` behind https).
   */
  get loginCookieName(): string {
    const name = `${this.config.auth.session.cookieName}_login`;
    return this.secureCookies ? `__Secure-${name}` : name;
  }

  get secureCookies(): boolean {
    return this.config.http.publicUrl.startsWith('https://');
  }

  /** A principal; groups that start with `system:` are dropped (they must never be impersonated). */
  principalFor(subject: string, email: string, groups: string[]): Principal {
    const a = this.config.auth.authorization;
    const kept = withoutSystemGroups(groups);
    if (kept.dropped.length > 0)
      this.log.warn({ subject, dropped: kept.dropped }, 'IdP groups starting with system: were dropped');
    return {
      subject,
      email,
      groups: kept.groups,
      tier: resolveTier(kept.groups, a.groupTiers, a.defaultTier),
    };
  }

  /**
   * The principal of a signed-in identity; 403 when its subject is a Kubernetes system name or
   * authorization.allowedGroups excludes it.
   */
  admit(identity: Identity): Principal {
    this.refuseSystemSubject(identity.subject);
    const allowed = this.config.auth.authorization.allowedGroups;
    if (!isAllowed(withoutSystemGroups(identity.groups).groups, allowed)) {
      this.log.warn(
        { subject: identity.subject, groups: identity.groups },
        'sign-in refused: not in authorization.allowedGroups',
      );
      throw new DomainError(
        ERROR_CODE.forbidden,
        `you are not in a group allowed to use Periscope; allowed groups: ${allowed.join(', ')}. Ask an administrator to add you to one of them`,
        { allowedGroups: allowed },
      );
    }
    return this.principalFor(identity.subject, identity.email, identity.groups);
  }

  private refuseSystemSubject(subject: string): void {
    if (!isSystemName(subject)) return;
    this.log.warn({ subject }, 'sign-in refused: the subject starts with system:');
    throw new DomainError(
      ERROR_CODE.forbidden,
      `your account's subject "${subject}" starts with "system:", which Kubernetes reserves for its own users, so Periscope will not act as it. ` +
        'Ask the administrator of your identity provider to give your account a subject (the OIDC sub claim) that does not start with system:',
    );
  }

  /** Starts a session for a principal; answers the cookie value. */
  async startSession(principal: Principal, tokens?: ProviderTokens): Promise<string> {
    try {
      return await this.sessions.create(principal, tokens);
    } catch (err) {
      if (isSharedStateUnavailable(err)) this.noteUnreadable(undefined, err);
      else if (err instanceof DomainError && err.code === ERROR_CODE.unavailable) {
        this.refusedSignIns?.inc({ reason: 'sessions_full' });
        this.log.warn(
          { subject: principal.subject, sessions: this.sessions.size, max: this.sessions.max },
          'sign-in refused: the session table is full',
        );
      }
      throw err;
    }
  }

  /** Follows the other replicas' news before the server serves (a failure only logs). */
  async onApplicationBootstrap(): Promise<void> {
    await this.news
      .start((m: LoginNews | null) => {
        if (typeof m !== 'object' || m === null) return;
        if ('ended' in m) this.emitEnded(m.ended.loginId, m.ended.why, false);
        else this.emitChanged(m.changed.loginId, m.changed.before, m.changed.after, false);
      })
      .catch((err: unknown) => {
        this.log.warn(
          { err: (err as Error).message },
          'could not follow the sign-outs of other replicas; their terminals here end at their next resume',
        );
      });
  }

  onApplicationShutdown(): Promise<void> {
    return this.news.stop();
  }

  /** Called when a sign-in ends by sign-out or a refused refresh (not by idle expiry). */
  onLoginEnded(listener: (loginId: string, why: LoginEnd) => void): void {
    this.endListeners.push(listener);
  }

  /** Called when a refresh changes a sign-in's principal (its groups, and so maybe its tier). */
  onPrincipalChanged(listener: (loginId: string, before: Principal, after: Principal) => void): void {
    this.changeListeners.push(listener);
  }

  /** The sign-in handle of a request (see loginIdOf), when it carries a session cookie. */
  loginId(req: IncomingMessage): string | undefined {
    const id = readCookie(req, this.cookieName);
    return id === undefined ? undefined : loginIdOf(id);
  }

  /** Ends the sign-in of a request (sign-out); its terminals end too. Answers its provider tokens. */
  async signOut(req: IncomingMessage): Promise<ProviderTokens | undefined> {
    const id = readCookie(req, this.cookieName);
    const tokens = await this.sessions.delete(id).catch((err: unknown) => {
      this.noteUnreadable(undefined, err);
      throw err;
    });
    if (id !== undefined && tokens !== undefined) this.emitEnded(loginIdOf(id), 'signed_out');
    return tokens;
  }

  private emitEnded(loginId: string, why: LoginEnd, tell = true): void {
    if (tell) void this.news.publish({ ended: { loginId, why } });
    for (const l of this.endListeners) {
      try {
        l(loginId, why);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'sign-in end listener failed');
      }
    }
  }

  private emitChanged(loginId: string, before: Principal, after: Principal, tell = true): void {
    if (tell) void this.news.publish({ changed: { loginId, before, after } });
    for (const l of this.changeListeners) {
      try {
        l(loginId, before, after);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'sign-in change listener failed');
      }
    }
  }

  /**
   * The signed-in principal of a request, refreshing the provider tokens first when they have
   * expired (once per session, shared by concurrent requests). A failed refresh ends the session
   * (and its terminals); a refresh that changes the principal is announced (terminals re-admit).
   */
  authenticate(req: IncomingMessage): Promise<Principal | undefined> {
    const id = readCookie(req, this.cookieName);
    return this.readSession(req, id);
  }

  /** {@link authenticate}; Redis not answering rejects with 503 (noted on the request), never "signed out". */
  private async readSession(req: IncomingMessage, id: string | undefined): Promise<Principal | undefined> {
    try {
      const p = await this.currentSession(id);
      if (id !== undefined) this.noteReadable();
      return p;
    } catch (err) {
      this.noteUnreadable(req, err);
      throw err;
    }
  }

  private currentSession(id: string | undefined): Promise<Principal | undefined> {
    return this.sessions.current(id, async (tokens, principal) => {
      const r = await this.refresh(tokens, principal);
      if (id === undefined) return r;
      if (r === null) this.emitEnded(loginIdOf(id), 'refresh_refused');
      else if (
        r.principal.tier !== principal.tier ||
        r.principal.groups.join('\n') !== principal.groups.join('\n')
      )
        this.emitChanged(loginIdOf(id), principal, r.principal);
      return r;
    });
  }

  /**
   * The signed-in principal of a request, or undefined (synchronous, for WebSocket upgrades).
   * HTTP requests refresh due tokens before they get here; when one is still due, the refresh
   * starts in the background.
   */
  principal(req: IncomingMessage): Principal | undefined {
    const id = readCookie(req, this.cookieName);
    const p = this.sessions.get(id);
    // A failure there is noted and logged (noteUnreadable); this answer stays the view's.
    if (p && this.sessions.refreshDue(id)) this.authenticate(req).catch(() => undefined);
    return p;
  }

  /**
   * Reads the request's sign-in from the shared store (Redis) into this replica's view, before a
   * synchronous check that did not pass the HTTP middleware (a WebSocket upgrade); undefined
   * when there is nothing to read (sessions in memory).
   */
  preload(req: IncomingMessage): Promise<void> | undefined {
    const id = readCookie(req, this.cookieName);
    const loading = id === undefined ? undefined : this.sessions.load(id);
    // Redis not answering: the check that follows answers 503 (see require), not 401.
    return loading?.then(
      () => {
        this.noteReadable();
      },
      (err: unknown) => {
        this.noteUnreadable(req, err);
      },
    );
  }

  /**
   * The signed-in principal; 401 E_AUTH when there is none, 503 E_UNAVAILABLE (`reason:
   * shared_state_unavailable`) when the sign-in could not be read because Redis did not answer.
   */
  require(req: IncomingMessage): Principal {
    const p = this.principal(req);
    const unreadable = this.unreadable.get(req);
    if (p === undefined && unreadable !== undefined) throw unreadable;
    return this.check(p);
  }

  /**
   * A sign-in lookup failed because Redis did not answer: remembered on the request (its checks
   * answer 503), logged once when the outage starts and then at most every 30 s while it lasts.
   */
  private noteUnreadable(req: IncomingMessage | undefined, err: unknown): void {
    if (!isSharedStateUnavailable(err)) return;
    if (req !== undefined) this.unreadable.set(req, err);
    const o = this.outage.failed(Date.now());
    if (o.log)
      this.log.warn(
        { err: err.message, refused: o.refused, outageSeconds: Math.round(o.sinceMs / 1000) },
        'shared state (Redis) unreachable: signed-in requests answer 503 E_UNAVAILABLE (reason shared_state_unavailable) until it is back; nobody is signed out',
      );
  }

  private noteReadable(): void {
    const lasted = this.outage.succeeded(Date.now());
    if (lasted !== undefined)
      this.log.log(
        { outageSeconds: Math.round(lasted / 1000) },
        'shared state (Redis) answers again: sign-ins are read as before',
      );
  }

  requireTier(req: IncomingMessage, minimum: TierName): Principal {
    return this.checkTier(this.require(req), minimum);
  }

  /** Like require / requireTier, refreshing due provider tokens first. */
  async requireFresh(req: IncomingMessage, minimum?: TierName): Promise<Principal> {
    const p = this.check(await this.authenticate(req));
    return minimum === undefined ? p : this.checkTier(p, minimum);
  }

  private check(p: Principal | undefined): Principal {
    if (!p) throw new DomainError(ERROR_CODE.auth, 'sign in first (GET /api/auth/login)');
    return p;
  }

  private checkTier(p: Principal, minimum: TierName): Principal {
    if (!tierAtLeast(p.tier, minimum)) {
      throw new DomainError(
        ERROR_CODE.forbidden,
        `this needs the ${minimum} tier; you have ${p.tier ?? 'no tier'}`,
      );
    }
    return p;
  }

  private async refresh(tokens: ProviderTokens, principal: Principal): Promise<Refreshed | null> {
    try {
      const r = await this.oidc.refresh(tokens, principal);
      if (isSystemName(r.identity.subject)) {
        this.log.warn(
          { subject: r.identity.subject },
          'session ended at refresh: the subject starts with system:',
        );
        return null;
      }
      if (
        !isAllowed(
          withoutSystemGroups(r.identity.groups).groups,
          this.config.auth.authorization.allowedGroups,
        )
      ) {
        this.log.warn(
          { subject: principal.subject, groups: r.identity.groups },
          'session ended at refresh: no longer in authorization.allowedGroups',
        );
        return null;
      }
      const next = this.principalFor(r.identity.subject, r.identity.email, r.identity.groups);
      this.log.debug({ subject: principal.subject, tier: next.tier }, 'OpenID session refreshed');
      return { principal: next, tokens: r.tokens };
    } catch (err) {
      this.log.warn(
        { subject: principal.subject, err: oidcErrorText(err) },
        'OpenID silent refresh failed; the session ends',
      );
      return null;
    }
  }
}
