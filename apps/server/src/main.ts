import { ConfigError } from '@periscope/config';
import { applyHeapGrowth, installProcessGuards, Metrics, OpsListener } from '@periscope/observability';
import { PinoLogger } from 'nestjs-pino';

import { loadServerConfigFromProcess } from './config/config.module';
import { createServerApp } from './server-app';

async function main(): Promise<void> {
  let config;
  try {
    config = loadServerConfigFromProcess();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`periscope-server: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  applyHeapGrowth(config.heapGrowingPercent);
  const app = await createServerApp(config);
  // Unhandled rejections are logged and counted, and the process keeps serving; an uncaught
  // exception is logged and ends the process (code 1), as Node would (docs/architecture.md).
  installProcessGuards({ log: (await app.resolve(PinoLogger)).logger, registry: app.get(Metrics).registry });
  await app.listen(config.http.port, config.http.listenAddress);
  // /metrics and /readyz live apart from the public port (PERISCOPE_METRICS_PORT; 0 = off).
  if (config.http.metricsPort !== 0)
    await app.get(OpsListener).listen(config.http.metricsPort, config.http.listenAddress);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `periscope-server: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
