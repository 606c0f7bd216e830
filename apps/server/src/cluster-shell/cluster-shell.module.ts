import { Module } from '@nestjs/common';

import { ClustersModule } from '../clusters/clusters.module';
import { ClusterShellController } from './cluster-shell.controller';
import { ShellAdmission } from './shell-admission.service';

@Module({
  imports: [ClustersModule],
  controllers: [ClusterShellController],
  providers: [ShellAdmission],
  exports: [ShellAdmission],
})
export class ClusterShellModule {}
