import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { LeanKubeConfig, TierBinder } from '@periscope/cluster-ops/dist/lean';
import { Metrics, tierBinderMetrics } from '@periscope/observability';
import { PinoLogger } from 'nestjs-pino';

import type { AgentConfig } from '../config/agent-config';
import { AGENT_CONFIG } from '../config/config.module';

/**
 * With PERISCOPE_TIER_BINDINGS (chart: clusterRBAC.enabled), keeps the write-capable tiers'
 * `edit` RoleBindings in every namespace of this cluster but the protected ones, with the agent's
 * own identity. Independent of the tunnel: it runs while the agent registers or reconnects.
 */
@Injectable()
export class TierBinderService implements OnApplicationBootstrap, OnApplicationShutdown {
  binder: TierBinder | undefined;

  constructor(
    @Inject(AGENT_CONFIG) private readonly config: AgentConfig,
    private readonly metrics: Metrics,
    private readonly log: PinoLogger,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.tierBindings) return;
    const kc = LeanKubeConfig.loadFromDefault();
    this.binder = new TierBinder(kc, {
      protectedNamespaces: this.config.protectedNamespaces,
      log: this.log.logger.child({ component: 'tier-binder', cluster: this.config.clusterName }),
      observer: tierBinderMetrics(this.metrics.registry),
    });
    this.binder.start();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.binder?.stop();
  }
}
