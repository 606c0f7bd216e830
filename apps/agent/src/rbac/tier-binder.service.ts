import { LeanKubeConfig, TierBinder } from '@periscope/cluster-ops/dist/lean';
import { tierBinderMetrics } from '@periscope/observability/dist/tier-binder-metrics';
import type { Logger } from 'pino';

import type { AgentConfig } from '../config/agent-config';
import type { Metrics } from '../observability/agent-observability';

/**
 * With PERISCOPE_TIER_BINDINGS (chart: clusterRBAC.enabled), keeps the write-capable tiers'
 * `edit` RoleBindings in every namespace of this cluster but the protected ones, with the agent's
 * own identity. Independent of the tunnel: it runs while the agent registers or reconnects.
 */
export class TierBinderService {
  binder: TierBinder | undefined;

  constructor(
    private readonly config: AgentConfig,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (!this.config.tierBindings) return;
    const kc = LeanKubeConfig.loadFromDefault();
    this.binder = new TierBinder(kc, {
      protectedNamespaces: this.config.protectedNamespaces,
      log: this.log.child({ component: 'tier-binder', cluster: this.config.clusterName }),
      observer: tierBinderMetrics(this.metrics.registry),
    });
    this.binder.start();
  }

  async stop(): Promise<void> {
    await this.binder?.stop();
  }
}
