import { Module, type DynamicModule } from '@nestjs/common';
import { ObservabilityModule } from '@periscope/observability';

import type { AgentConfig } from './config/agent-config';
import { ConfigModule } from './config/config.module';

@Module({})
export class AppModule {
  static forRoot(config: AgentConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        ObservabilityModule.forRoot({ service: 'periscope-agent', level: config.logLevel }),
      ],
    };
  }
}
