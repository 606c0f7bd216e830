/**
 * `npm start`: the embedded default. Starts the local control plane, the central server (dev
 * login, cluster shell enabled, tier authorization) and one agent (see ./system.ts), prints the
 * URL and the users, and stops everything on Ctrl-C.
 */
import { startSystem, type RunningSystem } from './system';

const say = (l: string): void => {
  process.stderr.write(`[start] ${l}\n`);
};

let system: RunningSystem | undefined;
let exiting = false;
function shutdown(code: number): void {
  if (exiting) return;
  exiting = true;
  const done = (): never => process.exit(code);
  if (!system) done();
  else void system.stop().finally(done);
}

async function main(): Promise<void> {
  process.on('SIGINT', () => {
    shutdown(0);
  });
  process.on('SIGTERM', () => {
    shutdown(0);
  });
  system = await startSystem({
    port: Number(process.env['PERISCOPE_HTTP_PORT'] ?? '8080'),
    tunnelPort: Number(process.env['PERISCOPE_AGENT_TUNNEL_PORT'] ?? '8443'),
    agentHealthPort: Number(process.env['PERISCOPE_AGENT_HEALTH_PORT'] ?? '8081'),
    metricsPort: Number(process.env['PERISCOPE_METRICS_PORT'] ?? '9090'),
    log: say,
    processLog: (name, line) => {
      process.stderr.write(`[${name}] ${line}\n`);
    },
    onUnexpectedExit: (name, code) => {
      say(`${name} exited (${code ?? 'signal'})`);
      shutdown(1);
    },
  });
  if (exiting) return;
  say('');
  say(`Periscope is running: ${system.url}`);
  say(`  metrics and readiness: ${system.opsUrl}/metrics, ${system.opsUrl}/readyz`);
  say(`  dev users: ${system.users.map((u) => `${u.subject} (${u.groups.join(',')})`).join(', ')}`);
  say(`  local cluster: KUBECONFIG=${system.cluster.info.adminKubeconfig}`);
  say(
    '  a cluster shell in this terminal: npm run shell -- local   (or local-agent, through the agent tunnel)',
  );
  say('  Ctrl-C stops everything.');
}

main().catch((err: unknown) => {
  say(`failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
