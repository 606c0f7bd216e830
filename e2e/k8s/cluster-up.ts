/**
 * `npm run cluster:up`: starts the local control plane for people, prints KUBECONFIG=<path> once
 * ready, stays in the foreground and stops everything on Ctrl-C or SIGTERM.
 */
import { startTestCluster } from './cluster';

async function main(): Promise<void> {
  const started = Date.now();
  const cluster = await startTestCluster({
    root: process.env['PERISCOPE_CLUSTER_ROOT'],
    log: (l) => {
      process.stderr.write(`[cluster] ${l}\n`);
    },
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`[cluster] ${signal}: stopping\n`);
    cluster.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`[cluster] stop failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => {
    stop('SIGINT');
  });
  process.on('SIGTERM', () => {
    stop('SIGTERM');
  });
  process.stderr.write(
    `[cluster] ready in ${((Date.now() - started) / 1000).toFixed(1)} s; apiserver ${cluster.url}\n`,
  );
  process.stdout.write(`KUBECONFIG=${cluster.info.adminKubeconfig}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`[cluster] failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
