import { Module, type DynamicModule } from '@nestjs/common';
import { ObservabilityModule } from '@periscope/observability';

import { AgentsModule } from './agents/agents.module';
import { AuditModule } from './audit/audit.module';
import { AuthModule } from './auth/auth.module';
import { ClusterShellModule } from './cluster-shell/cluster-shell.module';
import { ClustersModule } from './clusters/clusters.module';
import { ConfigModule } from './config/config.module';
import type { ServerConfig } from './config/server-config';
import { MetaModule } from './meta/meta.module';
import { PodExecModule } from './pod-exec/pod-exec.module';
import { RecordingModule } from './recording/recording.module';
import { ReplicasModule } from './replicas/replicas.module';
import { SharedStateModule } from './shared-state/shared-state.module';
import { TunnelModule } from './tunnel/tunnel.module';

@Module({})
export class AppModule {
  static forRoot(config: ServerConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        ObservabilityModule.forRoot({
          service: 'periscope-server',
          level: config.logLevel,
          // readiness and metrics are on the ops listener (PERISCOPE_METRICS_PORT), not the public port
          routes: 'liveness',
        }),
        SharedStateModule,
        MetaModule,
        AuthModule,
        AuditModule,
        AgentsModule,
        TunnelModule,
        ClustersModule,
        ClusterShellModule,
        PodExecModule,
        RecordingModule,
        ReplicasModule,
      ],
    };
  }
}
