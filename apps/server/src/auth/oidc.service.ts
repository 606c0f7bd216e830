import { Inject, Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';
// openid-client is ESM-only; TypeScript compiles this to require(), which Node >= 20.19 supports.
import * as oidc from 'openid-client';

import { DomainError } from '../common/domain-error';
import type { OidcSettings } from '../config/auth-file';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { readGroups, readString } from './claims';
import { deriveKey, LoginSealer } from './login-cookie';
import type { ProviderTokens } from './session-store';

/** Who signed in, as the provider says. */
export interface Identity {
  subject: string;
  email: string;
  groups: string[];
}

const LOGIN_TTL_MS = 10 * 60_000;
const RETRY_MIN_MS = 2_000;
const RETRY_MAX_MS = 60_000;
const clip = (s: string): string => (s.length > 200 ? `${s.slice(0, 200)}…` : s);
const errText = (err: unknown): string => clip(err instanceof Error ? err.message : String(err));

/** A loggable description of an openid-client error (the provider's error code when it sent one). */
export function oidcErrorText(err: unknown): string {
  if (err instanceof oidc.ResponseBodyError)
    return clip(
      `${err.error}${err.error_description ? `: ${err.error_description}` : ''} (HTTP ${String(err.status)})`,
    );
  return errText(err);
}

/**
 * The OpenID Connect relying party: discovery (lazy, retried with back-off), the authorization
 * code flow with PKCE (S256), state and nonce, silent refresh and RP-initiated logout. Tokens
 * never leave this service and the session store, and are never logged.
 */
@Injectable()
export class OidcService implements OnModuleInit, OnModuleDestroy {
  /**
   * Pending sign-ins live sealed in the browser's cookie, not here: nothing for strangers to fill.
   * With PERISCOPE_SESSION_KEY every replica seals with the same key (a sign-in started on one
   * finishes on another); else with a random key of this process.
   */
  readonly logins: LoginSealer;
  private readonly log = new Logger('auth');
  private resolved: oidc.Configuration | undefined;
  private inflight: Promise<oidc.Configuration> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = RETRY_MIN_MS;
  private stopped = false;

  constructor(@Inject(SERVER_CONFIG) private readonly config: ServerConfig) {
    // (a partial configuration in tests may lack the section)
    const key = (config.sharedState as ServerConfig['sharedState'] | undefined)?.sessionSecret;
    this.logins = new LoginSealer(
      LOGIN_TTL_MS,
      undefined,
      key === undefined ? undefined : deriveKey(Buffer.from(key, 'base64'), 'periscope-login-v1'),
    );
  }

  /** The oidc section when the server runs in OIDC mode. */
  get settings(): OidcSettings | undefined {
    return this.config.authMode === 'oidc' ? this.config.auth.oidc : undefined;
  }

  get redirectUrl(): string {
    return this.settings?.redirectUrl ?? `${this.config.http.publicUrl}/api/auth/callback`;
  }

  /** Where the provider sends the browser after RP-initiated logout. */
  get postLogoutRedirectUrl(): string {
    return `${this.config.http.publicUrl}/`;
  }

  onModuleInit(): void {
    // Start discovery now, without holding up start-up; failures are logged and retried.
    if (this.settings) this.discover().catch(() => undefined);
  }

  onModuleDestroy(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
  }

  /** The provider configuration, discovering it first when needed. */
  discover(): Promise<oidc.Configuration> {
    if (this.resolved) return Promise.resolve(this.resolved);
    const s = this.settings;
    if (!s)
      return Promise.reject(new DomainError(ERROR_CODE.notFound, 'OpenID Connect sign-in is not enabled'));
    this.inflight ??= this.runDiscovery(s).then(
      (c) => {
        this.resolved = c;
        this.inflight = undefined;
        clearTimeout(this.retryTimer);
        this.log.log({ issuer: s.issuer }, 'OpenID provider discovered');
        return c;
      },
      (err: unknown) => {
        this.inflight = undefined;
        const retryInMs = this.scheduleRetry();
        this.log.warn(
          { issuer: s.issuer, err: errText(err), retryInSeconds: retryInMs / 1000 },
          `OpenID discovery of ${s.issuer} failed; check oidc.issuer in the auth file and that the provider is reachable from the server. Retrying in ${String(retryInMs / 1000)} s`,
        );
        throw new DomainError(
          ERROR_CODE.internal,
          `the OpenID provider ${s.issuer} is not reachable right now (${errText(err)}); try again shortly`,
        );
      },
    );
    return this.inflight;
  }

  /**
   * Begins a sign-in: answers the provider URL and the sealed cookie that carries state, nonce,
   * PKCE verifier and return path to the callback.
   */
  async startLogin(returnTo: string): Promise<{ url: string; cookie: string }> {
    const s = this.requireSettings();
    const cfg = await this.discover();
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const params: Record<string, string> = {
      redirect_uri: this.redirectUrl,
      scope: s.scopes.join(' '),
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    };
    if (s.audience !== undefined) params['audience'] = s.audience;
    const cookie = this.logins.seal({ state, nonce, codeVerifier, returnTo });
    return { url: oidc.buildAuthorizationUrl(cfg, params).href, cookie };
  }

  /**
   * Finishes a sign-in from the callback query: opens the sealed sign-in cookie and checks its
   * state, exchanges the code (PKCE) and validates the ID token (signature, issuer, audience,
   * nonce). The provider redeems a code once, so a replayed callback fails there.
   */
  async finishLogin(
    loginCookie: string | undefined,
    rawQuery: string,
  ): Promise<{ identity: Identity; tokens: ProviderTokens; returnTo: string }> {
    this.requireSettings();
    const query = new URLSearchParams(rawQuery);
    const opened = this.logins.open(loginCookie);
    if (!opened.ok) {
      const minutes = Math.round(this.logins.ttlMs / 60_000);
      throw new DomainError(
        ERROR_CODE.badRequest,
        opened.reason === 'missing'
          ? `this sign-in is unknown or expired: it must finish within ${minutes} minutes, once, in the browser that started it (its sign-in cookie is missing). Start again at /api/auth/login`
          : opened.reason === 'expired'
            ? `this sign-in started more than ${minutes} minutes ago and has expired. Start again at /api/auth/login`
            : 'the sign-in cookie is not valid (altered, or issued by another server or before a restart). Start again at /api/auth/login',
      );
    }
    const pending = opened.login;
    const error = query.get('error');
    if (error !== null) {
      const desc = query.get('error_description');
      throw new DomainError(
        error === 'access_denied' ? ERROR_CODE.forbidden : ERROR_CODE.badRequest,
        clip(`the OpenID provider refused the sign-in: ${error}${desc ? ` (${desc})` : ''}`),
      );
    }
    if (query.get('state') !== pending.state)
      throw new DomainError(
        ERROR_CODE.badRequest,
        'the state parameter does not match the sign-in started in this browser (a forged or replayed callback); start again at /api/auth/login',
      );
    if (!query.get('code'))
      throw new DomainError(ERROR_CODE.badRequest, 'the callback has no authorization code');

    const cfg = await this.discover();
    const currentUrl = new URL(this.redirectUrl);
    currentUrl.search = query.toString();
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(cfg, currentUrl, {
        pkceCodeVerifier: pending.codeVerifier,
        expectedState: pending.state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      throw this.grantError('sign-in', err);
    }
    const claims = tokens.claims();
    if (!claims) throw new DomainError(ERROR_CODE.badRequest, 'the OpenID provider sent no ID token');
    const identity = await this.identityOf(cfg, claims, tokens.access_token, undefined);
    return {
      identity,
      tokens: {
        ...(tokens.refresh_token !== undefined ? { refreshToken: tokens.refresh_token } : {}),
        ...(tokens.id_token !== undefined ? { idToken: tokens.id_token } : {}),
        ...this.expiry(tokens.expiresIn(), claims.exp),
      },
      returnTo: pending.returnTo,
    };
  }

  /**
   * Silent refresh with the session's refresh token. Answers the identity (groups re-read
   * from the new ID token or userinfo) and the new tokens; throws when the provider refuses.
   */
  async refresh(
    tokens: ProviderTokens,
    previous: Identity,
  ): Promise<{ identity: Identity; tokens: ProviderTokens }> {
    if (tokens.refreshToken === undefined) throw new Error('no refresh token');
    const cfg = await this.discover();
    const r = await oidc.refreshTokenGrant(cfg, tokens.refreshToken);
    const claims = r.claims();
    if (claims && claims.sub !== previous.subject)
      throw new Error('the refreshed ID token is for another subject');
    const identity = await this.identityOf(
      cfg,
      claims ?? { sub: previous.subject },
      r.access_token,
      previous,
    );
    return {
      identity,
      tokens: {
        refreshToken: r.refresh_token ?? tokens.refreshToken,
        ...((r.id_token ?? tokens.idToken) !== undefined ? { idToken: r.id_token ?? tokens.idToken } : {}),
        // Without a new ID token only the access token's lifetime counts (the old ID token has expired).
        ...this.expiry(r.expiresIn(), claims?.exp),
      },
    };
  }

  /** The provider's logout URL (RP-initiated logout), or null when it has none. */
  async endSessionUrl(idToken: string | undefined): Promise<string | null> {
    const s = this.settings;
    if (!s) return null;
    let cfg: oidc.Configuration;
    try {
      cfg = await this.discover();
    } catch {
      return null;
    }
    if (cfg.serverMetadata().end_session_endpoint === undefined) return null;
    const params: Record<string, string> = {
      client_id: s.clientId,
      post_logout_redirect_uri: this.postLogoutRedirectUrl,
    };
    if (idToken !== undefined) params['id_token_hint'] = idToken;
    return oidc.buildEndSessionUrl(cfg, params).href;
  }

  private requireSettings(): OidcSettings {
    const s = this.settings;
    if (!s)
      throw new DomainError(
        ERROR_CODE.notFound,
        'OpenID Connect sign-in is not enabled on this server (PERISCOPE_AUTH_MODE is not oidc)',
      );
    return s;
  }

  private async runDiscovery(s: OidcSettings): Promise<oidc.Configuration> {
    const insecure = s.issuer.startsWith('http://');
    const options: oidc.DiscoveryRequestOptions = {
      timeout: 10,
      // eslint-disable-next-line @typescript-eslint/no-deprecated -- http issuers are for local providers
      ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}),
    };
    const found = await oidc.discovery(new URL(s.issuer), s.clientId, undefined, oidc.None(), options);
    const md = found.serverMetadata();
    if (s.clientSecret === undefined) return found;
    // client_secret_basic is the OpenID Connect default; use client_secret_post only when it is all
    // the provider supports.
    const methods = md.token_endpoint_auth_methods_supported;
    const auth =
      methods === undefined ||
      methods.includes('client_secret_basic') ||
      !methods.includes('client_secret_post')
        ? oidc.ClientSecretBasic(s.clientSecret)
        : oidc.ClientSecretPost(s.clientSecret);
    const cfg = new oidc.Configuration(md, s.clientId, { client_secret: s.clientSecret }, auth);
    cfg.timeout = 10;
    if (insecure) {
      // eslint-disable-next-line @typescript-eslint/no-deprecated -- http issuers are for local providers
      oidc.allowInsecureRequests(cfg);
      this.log.warn({ issuer: s.issuer }, 'the OpenID issuer is plain http; use https outside local tests');
    }
    return cfg;
  }

  private scheduleRetry(): number {
    const delay = this.retryDelayMs;
    if (this.stopped || this.retryTimer !== undefined) return delay;
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.stopped && !this.resolved) this.discover().catch(() => undefined);
    }, delay);
    this.retryTimer.unref();
    return delay;
  }

  /** Subject, email and groups from the ID token claims, asking userinfo for what is missing. */
  private async identityOf(
    cfg: oidc.Configuration,
    claims: Readonly<Record<string, unknown>> & { sub: string },
    accessToken: string,
    previous: Identity | undefined,
  ): Promise<Identity> {
    const groupsClaim = this.config.auth.authorization.groupsClaim;
    let email = readString(claims, 'email');
    let groups = readGroups(claims, groupsClaim);
    if ((groups === undefined || email === undefined) && cfg.serverMetadata().userinfo_endpoint) {
      try {
        const info = await oidc.fetchUserInfo(cfg, accessToken, claims.sub);
        email ??= readString(info, 'email');
        groups ??= readGroups(info, groupsClaim);
      } catch (err) {
        this.log.warn({ subject: claims.sub, err: errText(err) }, 'the OpenID userinfo request failed');
      }
    }
    if (groups === undefined && previous === undefined)
      this.log.warn(
        { subject: claims.sub, groupsClaim },
        `neither the ID token nor userinfo has the groups claim "${groupsClaim}"; the user has no groups (check authorization.groupsClaim and the scopes)`,
      );
    return {
      subject: claims.sub,
      email: email ?? previous?.email ?? '',
      groups: groups ?? previous?.groups ?? [],
    };
  }

  private expiry(expiresInSeconds: number | undefined, idTokenExp: number | undefined): ProviderTokens {
    const candidates: number[] = [];
    if (expiresInSeconds !== undefined) candidates.push(Date.now() + expiresInSeconds * 1000);
    if (idTokenExp !== undefined) candidates.push(idTokenExp * 1000);
    return candidates.length > 0 ? { expiresAt: Math.min(...candidates) } : {};
  }

  private grantError(what: string, err: unknown): DomainError {
    if (err instanceof DomainError) return err;
    if (err instanceof oidc.ResponseBodyError) {
      this.log.warn({ error: err.error, status: err.status }, `the OpenID provider refused the ${what}`);
      return new DomainError(
        ERROR_CODE.badRequest,
        clip(
          `the OpenID provider refused the ${what}: ${err.error}${err.error_description ? ` (${err.error_description})` : ''}; start again at /api/auth/login`,
        ),
      );
    }
    if (err instanceof oidc.ClientError) {
      this.log.warn({ code: err.code, err: errText(err) }, `the OpenID ${what} response failed validation`);
      return new DomainError(
        ERROR_CODE.badRequest,
        `the OpenID provider's answer failed validation (${errText(err)}); start again at /api/auth/login`,
      );
    }
    this.log.warn({ err: errText(err) }, `the OpenID ${what} failed`);
    return new DomainError(
      ERROR_CODE.internal,
      `the OpenID provider could not be reached (${errText(err)}); try again shortly`,
    );
  }
}
