import { Inject, Injectable } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';
import type { IncomingMessage } from 'node:http';

import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import type { TierName } from '../config/server-env';
import { SessionStore, type Principal } from './session-store';
import { resolveTier, tierAtLeast } from './tiers';

export function readCookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}

/** Who is calling: sessions, tiers and the dev-mode users. */
@Injectable()
export class AuthService {
  readonly sessions: SessionStore;

  constructor(@Inject(SERVER_CONFIG) readonly config: ServerConfig) {
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

  principalFor(subject: string, email: string, groups: string[]): Principal {
    const a = this.config.auth.authorization;
    return { subject, email, groups, tier: resolveTier(groups, a.groupTiers, a.defaultTier) };
  }

  /** The signed-in principal of a request, or undefined. */
  principal(req: IncomingMessage): Principal | undefined {
    return this.sessions.get(readCookie(req, this.cookieName));
  }

  require(req: IncomingMessage): Principal {
    const p = this.principal(req);
    if (!p) throw new DomainError(ERROR_CODE.auth, 'sign in first (GET /api/auth/login)');
    return p;
  }

  requireTier(req: IncomingMessage, minimum: TierName): Principal {
    const p = this.require(req);
    if (!tierAtLeast(p.tier, minimum)) {
      throw new DomainError(
        ERROR_CODE.forbidden,
        `this needs the ${minimum} tier; you have ${p.tier ?? 'no tier'}`,
      );
    }
    return p;
  }
}
