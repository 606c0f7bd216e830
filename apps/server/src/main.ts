import { ConfigError } from '@periscope/config';
import { applyHeapGrowth } from '@periscope/observability';

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
  await app.listen(config.http.port, config.http.listenAddress);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `periscope-server: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
