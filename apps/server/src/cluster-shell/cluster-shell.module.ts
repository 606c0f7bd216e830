import { Module } from '@nestjs/common';

import { ClustersModule } from '../clusters/clusters.module';
import { TerminalModule } from '../terminal/terminal.module';
import { TunnelModule } from '../tunnel/tunnel.module';
import { AgentOwnershipRecorder } from '../tunnel/agent-ownership.recorder';
import { ClusterShellController } from './cluster-shell.controller';
import { ShellAdmission } from './shell-admission.service';
import { ShellReaperService } from './shell-reaper.service';
import { ShellRehoming } from './shell-rehoming.service';
import { ShellSocketRoute } from './shell-socket-route';

@Module({
  imports: [TunnelModule, ClustersModule, TerminalModule],
  controllers: [ClusterShellController],
  // AgentOwnershipRecorder: here for its TunnelModule import (the shared-state module is global).
  providers: [ShellAdmission, ShellSocketRoute, ShellReaperService, AgentOwnershipRecorder, ShellRehoming],
  exports: [ShellAdmission],
})
export class ClusterShellModule {}
