import { Injectable, type NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';

import { AuthService } from './auth.service';

/**
 * Refreshes the provider tokens of the caller's session before any route runs, so handlers
 * that read the principal synchronously (AuthService.require) see a current session.
 */
@Injectable()
export class SessionRefreshMiddleware implements NestMiddleware {
  constructor(private readonly auth: AuthService) {}

  use(req: Request, _res: Response, next: NextFunction): void {
    if (req.headers.cookie === undefined) {
      next();
      return;
    }
    this.auth.authenticate(req).then(
      () => {
        next();
      },
      () => {
        next();
      },
    );
  }
}
