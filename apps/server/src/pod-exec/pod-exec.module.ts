import { Module } from '@nestjs/common';

import { ClustersModule } from '../clusters/clusters.module';
import { TerminalModule } from '../terminal/terminal.module';
import { PodExecAdmission } from './pod-exec-admission.service';
import { PodExecController } from './pod-exec.controller';
import { PodExecSocketRoute } from './pod-exec-socket-route';

@Module({
  imports: [ClustersModule, TerminalModule],
  controllers: [PodExecController],
  providers: [PodExecAdmission, PodExecSocketRoute],
})
export class PodExecModule {}
