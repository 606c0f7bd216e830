import { Module } from '@nestjs/common';

import { AgentsModule } from '../agents/agents.module';
import { ClustersModule } from '../clusters/clusters.module';
import { TerminalModule } from '../terminal/terminal.module';
import { ClusterShellController } from './cluster-shell.controller';
import { ShellAdmission } from './shell-admission.service';
import { ShellReaperService } from './shell-reaper.service';
import { ShellSocketRoute } from './shell-socket-route';

@Module({
  imports: [AgentsModule, ClustersModule, TerminalModule],
  controllers: [ClusterShellController],
  providers: [ShellAdmission, ShellSocketRoute, ShellReaperService],
  exports: [ShellAdmission],
})
export class ClusterShellModule {}
