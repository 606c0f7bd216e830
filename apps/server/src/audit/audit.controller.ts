import { Controller, Get, Inject, Query, Req, UseGuards } from '@nestjs/common';

import { AuthGuard, type AuthedRequest } from '../auth/auth.guard';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { auditQuery, AuditQueryDto } from './audit-query';
import { AuditLog } from './audit-log';
import type { AuditOutcome } from './audit-store';

export interface AuditEventView {
  id: number;
  time: string;
  verb: string;
  actor: string;
  cluster: string;
  sessionId: string;
  outcome: AuditOutcome;
  body: Record<string, unknown>;
}

@Controller('audit')
export class AuditController {
  constructor(
    private readonly store: AuditLog,
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
  ) {}

  /** Signed-in users: auditors see every event, everyone else only their own. Newest first. */
  @Get()
  @UseGuards(AuthGuard)
  async list(
    @Query() query: AuditQueryDto,
    @Req() req: AuthedRequest,
  ): Promise<{ events: AuditEventView[]; nextBefore: number | null }> {
    const q = auditQuery(query, req.principal, this.config.auth.authorization.auditAdminGroups);
    const page = await this.store.query(q);
    return {
      events: page.events.map((e) => ({
        id: e.id,
        time: e.time,
        verb: e.verb,
        actor: e.actor,
        cluster: e.cluster,
        sessionId: e.sessionId,
        outcome: e.outcome,
        body: e.body,
      })),
      nextBefore: page.nextBefore,
    };
  }
}
