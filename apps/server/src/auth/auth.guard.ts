import { Injectable, SetMetadata, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';

import type { TierName } from '../config/server-env';
import { AuthService } from './auth.service';
import type { Principal } from './session-store';

const MIN_TIER = 'periscope:minTier';

/** Restricts a route to signed-in users of at least this tier. */
export const RequireTier = (tier: TierName): MethodDecorator & ClassDecorator => SetMetadata(MIN_TIER, tier);

export type AuthedRequest = Request & { principal: Principal };

/**
 * Signed-in users only; with @RequireTier also checks the tier. Refreshes expired provider
 * tokens first (a failed refresh ends the session). Errors map to 401/403 JSON.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly auth: AuthService,
    private readonly reflector: Reflector,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const req = ctx.switchToHttp().getRequest<AuthedRequest>();
    const min = this.reflector.getAllAndOverride<TierName | undefined>(MIN_TIER, [
      ctx.getHandler(),
      ctx.getClass(),
    ]);
    req.principal = await this.auth.requireFresh(req, min);
    return true;
  }
}
