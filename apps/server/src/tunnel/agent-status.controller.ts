import { Controller, Get, Param, UseGuards } from '@nestjs/common';

import { AuthGuard, RequireTier } from '../auth/auth.guard';
import { AgentStatus } from './agent-status.service';

/**
 * Admin: the agents' links (`GET /api/agents`, the same from every replica) and request
 * diagnostics over the tunnel (`/api/agents/:cluster/requests/:rid`: several replicas forward it
 * to the replica holding the tunnel, see replicas/replica-routes.ts).
 */
@Controller('agents')
export class AgentStatusController {
  constructor(private readonly status: AgentStatus) {}

  @Get()
  @UseGuards(AuthGuard)
  @RequireTier('admin')
  async list(): Promise<{ agents: Record<string, unknown>[] }> {
    return { agents: await this.status.list() };
  }

  @Get(':cluster/requests/:rid')
  @UseGuards(AuthGuard)
  @RequireTier('admin')
  request(@Param('cluster') cluster: string, @Param('rid') rid: string): Promise<Record<string, unknown>> {
    return this.status.requestRecord(cluster, rid);
  }
}
