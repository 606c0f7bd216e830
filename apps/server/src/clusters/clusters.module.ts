import { Module } from '@nestjs/common';

import { AgentsModule } from '../agents/agents.module';
import { ClusterRegistry } from './cluster-registry.service';
import { ClustersController } from './clusters.controller';
import { TierBinderService } from './tier-binder.service';

@Module({
  imports: [AgentsModule],
  controllers: [ClustersController],
  providers: [ClusterRegistry, TierBinderService],
  exports: [ClusterRegistry],
})
export class ClustersModule {}
