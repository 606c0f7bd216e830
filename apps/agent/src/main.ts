// First: stand-ins for packages the agent's dependencies load but the agent never uses.
import './defer-unused';

import { ConfigError } from '@periscope/config';
import { applyHeapGrowth } from '@periscope/observability/dist/heap';
import { installProcessGuards } from '@periscope/observability/dist/process-guards';

import { AgentApp, handleShutdownSignals } from './agent-app';
import { loadAgentConfigFromProcess } from './config/agent-config';

// Only plain modules: `e2e/workspace/agent-lean-graph.spec.ts` fails if NestJS, Express,
// @kubernetes/client-node or another heavy package becomes part of what this file loads at start.
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
  const app = new AgentApp(config);
  // Unhandled rejections are logged and counted, and the process keeps serving; an uncaught
  // exception is logged and ends the process (code 1), as Node would (docs/architecture.md).
  installProcessGuards({ log: app.log, registry: app.metrics.registry });
  handleShutdownSignals(app);
  await app.listen(config.health.port, config.health.listenAddress);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `periscope-agent: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
