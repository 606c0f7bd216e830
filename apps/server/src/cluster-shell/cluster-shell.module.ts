import { Module } from '@nestjs/common';

import { ClustersModule } from '../clusters/clusters.module';
import { ClusterShellController } from './cluster-shell.controller';
import { ShellAdmission } from './shell-admission.service';
import { ShellReaperService } from './shell-reaper.service';
import { ShellSocketService } from './shell-socket.service';

@Module({
  imports: [ClustersModule],
  controllers: [ClusterShellController],
  providers: [ShellAdmission, ShellSocketService, ShellReaperService],
  exports: [ShellAdmission],
})
export class ClusterShellModule {}
