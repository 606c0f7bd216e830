import { Global, Module, type DynamicModule } from '@nestjs/common';

import { loadAgentConfig, type AgentConfig } from './agent-config';

export const AGENT_CONFIG = Symbol('AGENT_CONFIG');

/** The only place in the agent that reads process.env. */
export function loadAgentConfigFromProcess(): AgentConfig {
  return loadAgentConfig(process.env);
}

@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: AgentConfig): DynamicModule {
    return {
      module: ConfigModule,
      providers: [{ provide: AGENT_CONFIG, useValue: config }],
      exports: [AGENT_CONFIG],
    };
  }
}
