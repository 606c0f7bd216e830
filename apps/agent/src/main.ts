import { ConfigError } from '@periscope/config';
import { applyHeapGrowth } from '@periscope/observability';

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
  await app.listen(config.health.port, config.health.listenAddress);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `periscope-agent: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
