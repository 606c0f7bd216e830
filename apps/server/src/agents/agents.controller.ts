import { Body, Controller, Delete, HttpCode, Param, Post, Req, UseGuards } from '@nestjs/common';

import { AuthGuard, RequireTier, type AuthedRequest } from '../auth/auth.guard';
import { AgentRegistration } from './agent-registration.service';
import { MintTokenDto, RegisterAgentDto } from './agents.dto';

/** Registering agents (public, with a token) and revoking them (admin); their status is tunnel/'s. */
@Controller('agents')
export class AgentsController {
  constructor(private readonly agents: AgentRegistration) {}

  /** Admin: a single-use registration token for one agent cluster (15 min). */
  @Post('tokens')
  @UseGuards(AuthGuard)
  @RequireTier('admin')
  mint(
    @Body() body: MintTokenDto,
    @Req() req: AuthedRequest,
  ): Promise<{ token: string; expiresAt: string; cluster: string }> {
    return this.agents.mint(body.cluster, req.principal.subject);
  }

  /** Public: an agent redeems its token with a CSR and receives its client certificate. */
  @Post('register')
  @HttpCode(200)
  register(
    @Body() body: RegisterAgentDto,
  ): Promise<{ certificate: string; caBundle: string; tunnelUrl: string }> {
    return this.agents.register(body);
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
}
