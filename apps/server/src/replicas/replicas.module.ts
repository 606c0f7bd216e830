import { Module } from '@nestjs/common';

import { TerminalModule } from '../terminal/terminal.module';
import { TunnelModule } from '../tunnel/tunnel.module';
import { ReplicaRouter } from './replica-router.service';

/** Replica-to-replica forwarding (several replicas on Redis); see ReplicaRouter. */
@Module({
  imports: [TerminalModule, TunnelModule],
  providers: [ReplicaRouter],
  exports: [ReplicaRouter],
})
export class ReplicasModule {}
