/**
 * `npm run start:ha`: like `npm start`, but highly available: Redis (shared state), PostgreSQL
 * (audit), three server replicas behind HAProxy (round-robin, no stickiness) and the agent, whose
 * tunnel goes through HAProxy too (e2e/support/ha-stack.ts). Prints the URL; Ctrl-C stops
 * everything.
 */
import { startHaStack, type HaStack } from '../support/ha-stack';

const say = (l: string): void => {
  process.stderr.write(`[start:ha] ${l}\n`);
};

let stack: HaStack | undefined;
let exiting = false;
function shutdown(code: number): void {
  if (exiting) return;
  exiting = true;
  say('stopping');
  const done = (): never => process.exit(code);
  if (!stack) done();
  else void stack.stop().finally(done);
}

async function main(): Promise<void> {
  // A closed pipe on our output (`npm run start:ha | tee log`, then Ctrl-C) must not end the
  // runner half way through stopping the stack.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  process.on('SIGINT', () => {
    shutdown(0);
  });
  process.on('SIGTERM', () => {
    shutdown(0);
  });
  const started = Date.now();
  stack = await startHaStack({
    replicas: Number(process.env['PERISCOPE_HA_REPLICAS'] ?? '3'),
    port: Number(process.env['PERISCOPE_HTTP_PORT'] ?? '8080'),
    tunnelPort: Number(process.env['PERISCOPE_AGENT_TUNNEL_PORT'] ?? '8443'),
    agentHealthPort: Number(process.env['PERISCOPE_AGENT_HEALTH_PORT'] ?? '8081'),
    log: say,
    processLog: (name, line) => {
      process.stderr.write(`[${name}] ${line}\n`);
    },
    onUnexpectedExit: (name, code) => {
      // A replica may die: HAProxy sends its traffic to the others. The load balancer or the
      // agent dying ends the stack.
      say(`${name} exited (${code ?? 'signal'})`);
      if (!name.startsWith('replica-')) shutdown(1);
    },
  });
  if (exiting) return;
  say('');
  say(
    `Periscope (highly available) is running: ${stack.lbUrl}   (up in ${Math.round((Date.now() - started) / 1000)} s)`,
  );
  say(`  HAProxy in front of ${stack.replicas.length} replicas (round-robin, health check /readyz):`);
  for (const r of stack.replicas)
    say(`    ${r.id()}: ${r.url}  (ops ${r.opsUrl}/readyz, pid ${r.pid() ?? '?'})`);
  say(`  agent tunnel through HAProxy: ${stack.tunnelUrl}`);
  say('  shared state: redis-server on loopback; audit: PostgreSQL on loopback (temporary, removed at stop)');
  say(`  dev users: ${stack.users.map((u) => `${u.subject} (${u.groups.join(',')})`).join(', ')}`);
  say(`  local cluster: KUBECONFIG=${stack.cluster.info.adminKubeconfig}`);
  say('  try a failover: kill -9 the pid of a replica; HAProxy and the agent move to the others');
  say('  Ctrl-C stops everything.');
}

main().catch((err: unknown) => {
  say(`failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
