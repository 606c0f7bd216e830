import { Module } from '@nestjs/common';

import { TunnelModule } from '../tunnel/tunnel.module';
import { ClusterRegistry } from './cluster-registry.service';
import { ClustersController } from './clusters.controller';
import { ShellReadinessService } from './shell-readiness.service';
import { TierBinderService } from './tier-binder.service';

@Module({
  imports: [TunnelModule],
  controllers: [ClustersController],
  providers: [ClusterRegistry, TierBinderService, ShellReadinessService],
  exports: [ClusterRegistry, ShellReadinessService],
})
export class ClustersModule {}
