import { Module } from '@nestjs/common';

import { TunnelModule } from '../tunnel/tunnel.module';
import { ClusterRegistry } from './cluster-registry.service';
import { ClustersController } from './clusters.controller';
import { TierBinderService } from './tier-binder.service';

@Module({
  imports: [TunnelModule],
  controllers: [ClustersController],
  providers: [ClusterRegistry, TierBinderService],
  exports: [ClusterRegistry],
})
export class ClustersModule {}
