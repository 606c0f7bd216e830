import { Body, Controller, Get, HttpCode, Post, Req, Res, UseGuards } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';
import type { Request, Response } from 'express';

import { DomainError } from '../common/domain-error';
import { AuthGuard, type AuthedRequest } from './auth.guard';
import { AuthService, readCookie } from './auth.service';

@Controller('auth')
export class AuthController {
  constructor(private readonly auth: AuthService) {}

  /** Public: how to sign in. */
  @Get('config')
  config(): { authMode: 'oidc' | 'dev'; devUsers?: { subject: string; groups: string[] }[] } {
    const c = this.auth.config;
    if (c.authMode === 'dev')
      return {
        authMode: 'dev',
        devUsers: c.auth.devUsers.map((u) => ({ subject: u.subject, groups: u.groups })),
      };
    return { authMode: 'oidc' };
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
    };
  }

  /** Dev mode only (loopback listener, explicit PERISCOPE_AUTH_MODE=dev): sign in as a fixed user. */
  @Post('dev-login')
  @HttpCode(204)
  devLogin(@Body() body: unknown, @Res({ passthrough: true }) res: Response): void {
    const c = this.auth.config;
    if (c.authMode !== 'dev') throw new DomainError(ERROR_CODE.notFound, 'dev login is not enabled');
    const subject =
      typeof body === 'object' && body !== null ? (body as { subject?: unknown }).subject : undefined;
    const user = c.auth.devUsers.find((u) => u.subject === subject);
    if (!user)
      throw new DomainError(
        ERROR_CODE.badRequest,
        `unknown dev user; one of: ${c.auth.devUsers.map((u) => u.subject).join(', ')}`,
      );
    const id = this.auth.sessions.create(this.auth.principalFor(user.subject, user.email, user.groups));
    res.cookie(this.auth.cookieName, id, {
      httpOnly: true,
      sameSite: 'lax',
      secure: c.http.publicUrl.startsWith('https://'),
      path: '/',
    });
  }

  @Post('logout')
  @HttpCode(204)
  logout(@Req() req: Request, @Res({ passthrough: true }) res: Response): void {
    this.auth.sessions.delete(readCookie(req, this.auth.cookieName));
    res.clearCookie(this.auth.cookieName, { path: '/' });
  }
}
