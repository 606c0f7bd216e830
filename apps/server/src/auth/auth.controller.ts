import { Body, Controller, Get, HttpCode, Post, Query, Req, Res, UseGuards } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';
import type { CookieOptions, Request, Response } from 'express';

import { DomainError } from '../common/domain-error';
import { DevLoginDto, LoginQueryDto } from './auth.dto';
import { AuthGuard, type AuthedRequest } from './auth.guard';
import { AuthService, readCookie } from './auth.service';
import { safeReturnTo } from './return-to';
import { isAuditor } from './tiers';

@Controller('auth')
export class AuthController {
  constructor(private readonly auth: AuthService) {}

  /** Public: how to sign in. */
  @Get('config')
  config(): {
    authMode: 'oidc' | 'dev';
    devUsers?: { subject: string; groups: string[] }[];
    providerName?: string;
  } {
    const c = this.auth.config;
    if (c.authMode === 'dev')
      return {
        authMode: 'dev',
        devUsers: c.auth.devUsers.map((u) => ({ subject: u.subject, groups: u.groups })),
      };
    const providerName = c.auth.oidc?.providerName;
    return { authMode: 'oidc', ...(providerName !== undefined ? { providerName } : {}) };
  }

  /** OIDC: starts the authorization code flow (PKCE, state, nonce) and redirects to the provider. */
  @Get('login')
  async login(@Query() query: LoginQueryDto, @Res() res: Response): Promise<void> {
    if (this.auth.config.authMode !== 'oidc')
      throw new DomainError(
        ERROR_CODE.notFound,
        'OpenID Connect sign-in is not enabled (PERISCOPE_AUTH_MODE=dev); use POST /api/auth/dev-login',
      );
    const { url, cookie } = await this.auth.oidc.startLogin(safeReturnTo(query.returnTo));
    res.cookie(this.auth.loginCookieName, cookie, {
      ...this.cookieOptions('/api/auth'),
      maxAge: this.auth.oidc.logins.ttlMs,
    });
    res.setHeader('cache-control', 'no-store');
    res.redirect(302, url);
  }

  /** OIDC: the provider's redirect back; creates the session and redirects to returnTo. */
  @Get('callback')
  async callback(@Req() req: Request, @Res() res: Response): Promise<void> {
    if (this.auth.config.authMode !== 'oidc')
      throw new DomainError(ERROR_CODE.notFound, 'OpenID Connect sign-in is not enabled');
    res.clearCookie(this.auth.loginCookieName, this.cookieOptions('/api/auth'));
    res.setHeader('cache-control', 'no-store');
    const q = req.originalUrl.indexOf('?');
    const { identity, tokens, returnTo } = await this.auth.oidc.finishLogin(
      readCookie(req, this.auth.loginCookieName),
      q < 0 ? '' : req.originalUrl.slice(q + 1),
    );
    const principal = this.auth.admit(identity);
    // A fresh session id on every sign-in (no fixation); the previous session of this browser ends.
    await this.auth.sessions.delete(readCookie(req, this.auth.cookieName));
    const id = await this.auth.startSession(principal, tokens);
    res.cookie(this.auth.cookieName, id, this.cookieOptions('/'));
    res.redirect(302, returnTo);
  }

  @Get('whoami')
  @UseGuards(AuthGuard)
  whoami(@Req() req: AuthedRequest): Record<string, unknown> {
    const p = req.principal;
    return {
      subject: p.subject,
      email: p.email,
      groups: p.groups,
      mode: this.auth.config.authMode,
      authzMode: this.auth.config.auth.authorization.mode,
      tier: p.tier ?? null,
      auditEnabled: true,
      auditScope: isAuditor(p, this.auth.config.auth.authorization.auditAdminGroups) ? 'all' : 'self',
      expiresAt: Math.floor(
        (this.auth.sessions.expiresAt(readCookie(req, this.auth.cookieName)) ?? Date.now()) / 1000,
      ),
    };
  }

  /** Dev mode only (loopback listener, explicit PERISCOPE_AUTH_MODE=dev): sign in as a fixed user. */
  @Post('dev-login')
  @HttpCode(204)
  async devLogin(@Body() body: DevLoginDto, @Res({ passthrough: true }) res: Response): Promise<void> {
    const c = this.auth.config;
    if (c.authMode !== 'dev') throw new DomainError(ERROR_CODE.notFound, 'dev login is not enabled');
    const user = c.auth.devUsers.find((u) => u.subject === body.subject);
    if (!user)
      throw new DomainError(
        ERROR_CODE.badRequest,
        `unknown dev user; one of: ${c.auth.devUsers.map((u) => u.subject).join(', ')}`,
      );
    const id = await this.auth.startSession(this.auth.principalFor(user.subject, user.email, user.groups));
    res.cookie(this.auth.cookieName, id, this.cookieOptions('/'));
  }

  /**
   * Ends the session and clears the cookie. In OIDC mode `endSessionUrl` is the provider's
   * logout URL (RP-initiated logout) for the browser to visit, or null when it has none.
   */
  @Post('logout')
  @HttpCode(200)
  async logout(
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ): Promise<{ endSessionUrl: string | null }> {
    // Ends the sign-in and its terminals (closed with E_SIGNED_OUT).
    const tokens = await this.auth.signOut(req);
    res.clearCookie(this.auth.cookieName, this.cookieOptions('/'));
    res.setHeader('cache-control', 'no-store');
    return { endSessionUrl: await this.auth.oidc.endSessionUrl(tokens?.idToken) };
  }

  private cookieOptions(path: string): CookieOptions {
    return { httpOnly: true, sameSite: 'lax', secure: this.auth.secureCookies, path };
  }
}
