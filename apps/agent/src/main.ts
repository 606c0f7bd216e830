import { ConfigError } from '@periscope/config';
import { applyHeapGrowth, installProcessGuards, Metrics } from '@periscope/observability';
import { PinoLogger } from 'nestjs-pino';

import { createAgentApp } from './agent-app';
import { loadAgentConfigFromProcess } from './config/config.module';

async function main(): Promise<void> {
  let config;
  try {
    config = loadAgentConfigFromProcess();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`periscope-agent: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  applyHeapGrowth(config.heapGrowingPercent);
  const app = await createAgentApp(config);
  // Unhandled rejections are logged and counted, and the process keeps serving; an uncaught
  // exception is logged and ends the process (code 1), as Node would (docs/architecture.md).
  installProcessGuards({ log: (await app.resolve(PinoLogger)).logger, registry: app.get(Metrics).registry });
  await app.listen(config.health.port, config.health.listenAddress);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `periscope-agent: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
