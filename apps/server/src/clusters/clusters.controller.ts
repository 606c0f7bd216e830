import { Controller, Get, Inject, Req, UseGuards } from '@nestjs/common';

import { AuthGuard, type AuthedRequest } from '../auth/auth.guard';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { shellForCaller } from '../config/effective-shell-settings';
import { AgentStatusShared } from '../tunnel/agent-status-shared';
import { ClusterRegistry, type ClusterView } from './cluster-registry.service';
import { ShellReadinessService } from './shell-readiness.service';

@Controller('clusters')
@UseGuards(AuthGuard)
export class ClustersController {
  constructor(
    private readonly registry: ClusterRegistry,
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly readiness: ShellReadinessService,
    private readonly agents: AgentStatusShared,
  ) {}

  /**
   * Every cluster with its backend, connection state and what it offers the caller: the cluster
   * shell shows as enabled only when this person's tier may open one (the UI hides the button
   * otherwise and shows the reason). Several replicas: an agent whose tunnel another replica
   * holds shows as that replica publishes it (every replica answers the same).
   */
  @Get()
  async list(@Req() req: AuthedRequest): Promise<{ clusters: ClusterView[] }> {
    const tier = req.principal.tier;
    // A direct cluster refused for missing RBAC is checked again (once it is a few seconds old),
    // so an install shows here without waiting for the next round.
    await this.readiness.recheckRefused();
    const remote = await this.agents.remote();
    // The cluster's own tiers (clusters-file overrides) decide, and the mode is this tier's; then
    // the shell RBAC on direct clusters (shell-readiness.service.ts).
    return {
      clusters: this.registry
        .list(remote)
        .map((c) => shellForCaller(c, tier))
        .map((c) => this.readiness.applyTo(c, tier)),
    };
  }
}
