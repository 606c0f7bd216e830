import { Inject, Injectable, Logger } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';
import type { IncomingMessage } from 'node:http';

import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import type { TierName } from '../config/server-env';
import { isAllowed } from './claims';
import { OidcService, oidcErrorText, type Identity } from './oidc.service';
import { SessionStore, type Principal, type ProviderTokens, type Refreshed } from './session-store';
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

/** Who is calling: sessions (with silent OIDC refresh), tiers and the dev-mode users. */
@Injectable()
export class AuthService {
  readonly sessions: SessionStore;
  private readonly log = new Logger('auth');

  constructor(
    @Inject(SERVER_CONFIG) readonly config: ServerConfig,
    readonly oidc: OidcService,
  ) {
    const s = config.auth.session;
    this.sessions = new SessionStore({
      idleMs: s.idleTimeoutSeconds * 1000,
      absoluteMs: s.absoluteTimeoutSeconds * 1000,
      max: 10_000,
    });
  }

  get cookieName(): string {
    return this.config.auth.session.cookieName;
  }

  /** The short-lived cookie that ties an OIDC callback to the browser that started the sign-in. */
  get loginCookieName(): string {
    return `${this.cookieName}_login`;
  }

  get secureCookies(): boolean {
    return this.config.http.publicUrl.startsWith('https://');
  }

  principalFor(subject: string, email: string, groups: string[]): Principal {
    const a = this.config.auth.authorization;
    return { subject, email, groups, tier: resolveTier(groups, a.groupTiers, a.defaultTier) };
  }

  /** The principal of a signed-in identity; 403 when authorization.allowedGroups excludes it. */
  admit(identity: Identity): Principal {
    const allowed = this.config.auth.authorization.allowedGroups;
    if (!isAllowed(identity.groups, allowed)) {
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

  /** Starts a session for a principal; answers the cookie value. */
  startSession(principal: Principal, tokens?: ProviderTokens): string {
    return this.sessions.create(principal, tokens);
  }

  /**
   * The signed-in principal of a request, refreshing the provider tokens first when they have
   * expired (once per session, shared by concurrent requests). A failed refresh ends the session.
   */
  authenticate(req: IncomingMessage): Promise<Principal | undefined> {
    return this.sessions.current(readCookie(req, this.cookieName), (tokens, principal) =>
      this.refresh(tokens, principal),
    );
  }

  /**
   * The signed-in principal of a request, or undefined (synchronous, for WebSocket upgrades).
   * HTTP requests refresh due tokens before they get here; when one is still due, the refresh
   * starts in the background.
   */
  principal(req: IncomingMessage): Principal | undefined {
    const id = readCookie(req, this.cookieName);
    const p = this.sessions.get(id);
    if (p && this.sessions.refreshDue(id)) void this.authenticate(req);
    return p;
  }

  require(req: IncomingMessage): Principal {
    return this.check(this.principal(req));
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
      if (!isAllowed(r.identity.groups, this.config.auth.authorization.allowedGroups)) {
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
