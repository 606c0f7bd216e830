import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { LeanKubeConfig, TierBinder } from '@periscope/cluster-ops';
import { Metrics, tierBinderMetrics } from '@periscope/observability';
import { PinoLogger } from 'nestjs-pino';

import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';

/**
 * With PERISCOPE_TIER_BINDINGS (chart: clusterRBAC.enabled), keeps the write-capable tiers'
 * `edit` RoleBindings on the cluster the server runs in, with its in-cluster identity, in every
 * namespace but Periscope's own: PERISCOPE_PROTECTED_NAMESPACES, the shell namespace while the
 * shell is on, and the `protectedNamespaces` of an in-cluster entry of the clusters file.
 */
@Injectable()
export class TierBinderService implements OnApplicationBootstrap, OnApplicationShutdown {
  binder: TierBinder | undefined;
  private kc: LeanKubeConfig | undefined;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly metrics: Metrics,
    private readonly log: PinoLogger,
  ) {}

  /** The namespaces of the server's own cluster the binder leaves without `edit` bindings. */
  protectedNamespaces(): string[] {
    const c = this.config;
    return [
      ...new Set([
        ...c.protection.ownNamespaces,
        ...(c.clusterShell.enabled ? [c.clusterShell.namespace] : []),
        ...c.clusters.filter((e) => e.backend === 'in-cluster').flatMap((e) => e.protectedNamespaces),
      ]),
    ].sort();
  }

  onApplicationBootstrap(): void {
    if (!this.config.protection.tierBindings) return;
    // raw list/watch/create calls only (tier-binder.ts): client-node is never loaded for it
    const kc = (this.kc = LeanKubeConfig.loadFromCluster());
    this.binder = new TierBinder(kc, {
      protectedNamespaces: this.protectedNamespaces(),
      log: this.log.logger.child({ component: 'tier-binder' }),
      observer: tierBinderMetrics(this.metrics.registry),
    });
    this.binder.start();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.binder?.stop();
    this.kc?.close();
  }
}
