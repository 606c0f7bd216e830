import { Body, Controller, Delete, Get, HttpCode, Param, Post, Req, UseGuards } from '@nestjs/common';

import { AuthGuard, RequireTier, type AuthedRequest } from '../auth/auth.guard';
import { AgentsService } from './agents.service';

@Controller('agents')
export class AgentsController {
  constructor(private readonly agents: AgentsService) {}

  /** Admin: a single-use registration token for one agent cluster (15 min). */
  @Post('tokens')
  @UseGuards(AuthGuard)
  @RequireTier('admin')
  mint(
    @Body() body: unknown,
    @Req() req: AuthedRequest,
  ): { token: string; expiresAt: string; cluster: string } {
    const cluster =
      typeof body === 'object' && body !== null ? (body as { cluster?: unknown }).cluster : undefined;
    return this.agents.mint(cluster, req.principal.subject);
  }

  /** Public: an agent redeems its token with a CSR and receives its client certificate. */
  @Post('register')
  @HttpCode(200)
  register(@Body() body: unknown): Promise<{ certificate: string; caBundle: string; tunnelUrl: string }> {
    return this.agents.register(body);
  }

  @Get()
  @UseGuards(AuthGuard)
  @RequireTier('admin')
  list(): { agents: Record<string, unknown>[] } {
    return { agents: this.agents.list() };
  }

  /**
   * Admin: revokes (deregisters) a cluster's agent. Its certificate is refused from now on, the
   * tunnel drops at once; registering again with a new token brings it back. Audited.
   */
  @Delete(':cluster')
  @UseGuards(AuthGuard)
  @RequireTier('admin')
  revoke(
    @Param('cluster') cluster: string,
    @Req() req: AuthedRequest,
  ): Promise<{ cluster: string; revoked: true; droppedConnection: boolean }> {
    return this.agents.revoke(cluster, req.principal.subject);
  }

  @Get(':cluster/requests/:rid')
  @UseGuards(AuthGuard)
  @RequireTier('admin')
  request(@Param('cluster') cluster: string, @Param('rid') rid: string): Promise<Record<string, unknown>> {
    return this.agents.requestRecord(cluster, rid);
  }
}
