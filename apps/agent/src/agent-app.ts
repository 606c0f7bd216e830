import 'reflect-metadata';

import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger } from 'nestjs-pino';

import { AppModule } from './app.module';
import { agentConfigForLog, type AgentConfig } from './config/agent-config';

/** Builds the agent application (not listening yet); used by main and by tests. */
export async function createAgentApp(
  config: AgentConfig,
  opts: { runtime?: boolean } = {},
): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, opts), {
    bufferLogs: true,
  });
  const logger = app.get(Logger);
  app.useLogger(logger);
  app.disable('x-powered-by');
  app.enableShutdownHooks();
  logger.log({ config: agentConfigForLog(config) }, 'effective configuration');
  return app;
}
