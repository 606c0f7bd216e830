import { Controller, Get, Inject, Req, UseGuards } from '@nestjs/common';

import { AuthGuard, type AuthedRequest } from '../auth/auth.guard';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { ClusterRegistry, type ClusterView } from './cluster-registry.service';

@Controller('clusters')
@UseGuards(AuthGuard)
export class ClustersController {
  constructor(
    private readonly registry: ClusterRegistry,
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
  ) {}

  /**
   * Every cluster with its backend, connection state and what it offers the caller: the cluster
   * shell shows as enabled only when this person's tier may open one (the UI hides the button
   * otherwise and shows the reason).
   */
  @Get()
  list(@Req() req: AuthedRequest): { clusters: ClusterView[] } {
    const tier = req.principal.tier;
    const tiers = this.config.clusterShell.tiers;
    const allowed = tier !== undefined && tiers.includes(tier);
    return {
      clusters: this.registry.list().map((c) =>
        c.clusterShellEnabled && !allowed
          ? {
              ...c,
              clusterShellEnabled: false,
              clusterShellReason: `your tier (${tier ?? 'none'}) may not open a cluster shell; allowed: ${tiers.join(', ')}`,
            }
          : c,
      ),
    };
  }
}
