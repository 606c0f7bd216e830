import { Module } from '@nestjs/common';

import { AgentsModule } from '../agents/agents.module';
import { ClusterRegistry } from './cluster-registry.service';
import { ClustersController } from './clusters.controller';

@Module({
  imports: [AgentsModule],
  controllers: [ClustersController],
  providers: [ClusterRegistry],
  exports: [ClusterRegistry],
})
export class ClustersModule {}
