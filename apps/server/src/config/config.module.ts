import { readFileSync } from 'node:fs';

import { Global, Module, type DynamicModule } from '@nestjs/common';

import { loadServerConfig, type ServerConfig } from './server-config';

/** Injection token of the validated ServerConfig. */
export const SERVER_CONFIG = Symbol('SERVER_CONFIG');

/** The only place in the server that reads process.env. */
export function loadServerConfigFromProcess(): ServerConfig {
  return loadServerConfig(process.env, (path) => readFileSync(path, 'utf8'));
}

@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: ServerConfig): DynamicModule {
    return {
      module: ConfigModule,
      providers: [{ provide: SERVER_CONFIG, useValue: config }],
      exports: [SERVER_CONFIG],
    };
  }
}
