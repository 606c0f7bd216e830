import { Controller, Get, UseGuards } from '@nestjs/common';

import { AuthGuard } from '../auth/auth.guard';
import { ClusterRegistry, type ClusterView } from './cluster-registry.service';

@Controller('clusters')
@UseGuards(AuthGuard)
export class ClustersController {
  constructor(private readonly registry: ClusterRegistry) {}

  /** Every cluster with its backend, connection state and what it offers (pod exec, cluster shell). */
  @Get()
  list(): { clusters: ClusterView[] } {
    return { clusters: this.registry.list() };
  }
}
