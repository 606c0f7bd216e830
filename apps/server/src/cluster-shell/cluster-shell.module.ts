import { Module } from '@nestjs/common';

import { ClustersModule } from '../clusters/clusters.module';
import { TerminalModule } from '../terminal/terminal.module';
import { TunnelModule } from '../tunnel/tunnel.module';
import { ClusterShellController } from './cluster-shell.controller';
import { ShellAdmission } from './shell-admission.service';
import { ShellReaperService } from './shell-reaper.service';
import { ShellSocketRoute } from './shell-socket-route';

@Module({
  imports: [TunnelModule, ClustersModule, TerminalModule],
  controllers: [ClusterShellController],
  providers: [ShellAdmission, ShellSocketRoute, ShellReaperService],
  exports: [ShellAdmission],
})
export class ClusterShellModule {}
