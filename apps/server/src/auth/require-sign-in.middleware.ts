import { Injectable, type NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';

import { DomainError, HTTP_STATUS } from '../common/domain-error';
import { AuthService } from './auth.service';

/** `/api/clusters/<anything>`: every answer there is about one cluster. */
const CLUSTER_PATH = /^\/api\/clusters\/[^/]/;

/**
 * Cluster paths answer 401 to callers who are not signed in, before any route looks the cluster
 * up: otherwise "unknown cluster" (404) versus "sign in" (401) would tell a stranger which
 * cluster names exist. Runs after SessionRefreshMiddleware, so a due refresh has happened (and
 * a sign-in Redis could not read answers 503 E_UNAVAILABLE here, not 401).
 */
@Injectable()
export class RequireSignInMiddleware implements NestMiddleware {
  constructor(private readonly auth: AuthService) {}

  use(req: Request, res: Response, next: NextFunction): void {
    if (!CLUSTER_PATH.test(req.originalUrl)) {
      next();
      return;
    }
    try {
      this.auth.require(req);
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      res.status(HTTP_STATUS[err.code]).json({ error: err.code, message: err.message, ...err.details });
      return;
    }
    next();
  }
}
