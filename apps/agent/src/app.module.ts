import { Module, type DynamicModule } from '@nestjs/common';
import { ObservabilityModule } from '@periscope/observability';

import type { AgentConfig } from './config/agent-config';
import { ConfigModule } from './config/config.module';
import { TierBinderService } from './rbac/tier-binder.service';
import { AgentRuntime } from './runtime/agent-runtime.service';

@Module({})
export class AppModule {
  static forRoot(config: AgentConfig, opts: { runtime?: boolean } = {}): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        ObservabilityModule.forRoot({ service: 'periscope-agent', level: config.logLevel }),
      ],
      // Tests of the HTTP surface alone run without registering or dialling the server.
      providers: opts.runtime === false ? [] : [AgentRuntime, TierBinderService],
    };
  }
}
