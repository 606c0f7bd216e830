/**
 * The whole system for the benchmarks: a local control plane whose node runs the shell image's
 * files, the BUILT server and agent as child processes (like e2e/system/system.ts, whose few
 * start-up lines are repeated here so the benchmarks can add what they need without changing it):
 * extra agent clusters for the capacity run, raised caps through `env`, the server's and the
 * agent's Node inspector on loopback (to force a garbage collection before memory readings) and
 * the pids of server and agent by name.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { stringify } from 'yaml';

import { shellNamespaceRbac } from '../cluster-ops/shell-rbac';
import { startTestCluster, type TestCluster } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { devLogin } from '../support/dev-login';
import { assembleShellImage } from '../support/local-stack';
import { spawnNode, terminate, waitHttp } from '../support/node-process';

const root = resolve(__dirname, '../..');

export interface BenchSystem {
  /** `http://127.0.0.1:<port>` for HTTP calls */
  base: string;
  /** the server's ops listener (/metrics, /readyz) */
  opsBase: string;
  /** the agent's health listener (/metrics) */
  agentBase: string;
  /** the origin the server allows for terminal WebSockets */
  origin: string;
  port: number;
  tunnelPort: number;
  cluster: TestCluster;
  /** dev-login cookie of the admin user */
  cookie: string;
  serverPid: number;
  agentPid: number;
  /** ws:// URLs of the server's and the agent's inspectors (for HeapProfiler.collectGarbage) */
  inspectorUrl: string;
  agentInspectorUrl: string;
  stop: () => Promise<void>;
}

/** Extra Node flags for experiments, e.g. BENCH_AGENT_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const nodeArgs = (name: string): string[] => (process.env[name] ?? '').split(' ').filter((a) => a !== '');

export async function startBenchSystem(opts: {
  extraAgentClusters?: string[];
  /**
   * Adds the kubeconfig cluster `local-rec`: the same apiserver as `local`, its pod execs recorded
   * in this mode (the clusters file's `exec.recording`), so that recorded and unrecorded runs can
   * alternate in one server process.
   */
  recordedLocal?: 'output' | 'output+input';
  env?: Record<string, string>;
  log?: (line: string) => void;
  /** server/agent output lines (warnings and errors only: log level warn) */
  processLog?: (line: string) => void;
}): Promise<BenchSystem> {
  const say = opts.log ?? ((): void => undefined);
  const processLog = opts.processLog ?? ((): void => undefined);
  const [port, tunnelPort, healthPort, metricsPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];

  const work = mkdtempSync(join(tmpdir(), 'periscope-bench-'));
  const { shellImage, imageMap } = assembleShellImage(work);
  say('starting the local control plane');
  const cluster = await startTestCluster({ log: say, imageMap });

  const children: ChildProcess[] = [];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const child of [...children].reverse()) await terminate(child, 15_000);
      await cluster.stop();
      rmSync(work, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    await cluster.createNamespace('periscope-system');
    await cluster.apply(shellNamespaceRbac('periscope-system', ['admin'], { admin: 'cluster-admin' }));
    const dir = join(cluster.info.stateDir, 'periscope');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'auth.yaml'),
      stringify({
        authorization: { mode: 'tier', groupTiers: { 'platform-admins': 'admin' } },
        dev: { users: [{ subject: 'admin', email: 'admin@periscope.local', groups: ['platform-admins'] }] },
      }),
    );
    writeFileSync(
      join(dir, 'clusters.yaml'),
      stringify({
        clusters: [
          {
            name: 'local',
            backend: 'kubeconfig',
            kubeconfigPath: cluster.info.adminKubeconfig,
            environment: 'dev',
          },
          { name: 'local-agent', backend: 'agent', environment: 'dev' },
          ...(opts.recordedLocal
            ? [
                {
                  name: 'local-rec',
                  backend: 'kubeconfig',
                  kubeconfigPath: cluster.info.adminKubeconfig,
                  environment: 'dev',
                  exec: { recording: opts.recordedLocal },
                },
              ]
            : []),
          ...(opts.extraAgentClusters ?? []).map((name) => ({ name, backend: 'agent', environment: 'dev' })),
        ],
      }),
    );

    let inspectorUrl = '';
    let agentInspectorUrl = '';
    const server = spawnNode(
      [
        // as the chart runs it (maxSemiSpaceMiB); BENCH_SERVER_NODE_ARGS may override it
        '--max-semi-space-size=4',
        ...nodeArgs('BENCH_SERVER_NODE_ARGS'),
        '--inspect=127.0.0.1:0',
        // BENCH_SERVER_MAIN: another build of the server (an A/B against a saved dist)
        process.env['BENCH_SERVER_MAIN'] ?? join(root, 'apps/server/dist/main.js'),
      ],
      {
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_CLUSTER_SHELL_IMAGE: shellImage,
        PERISCOPE_HTTP_PORT: String(port),
        PERISCOPE_METRICS_PORT: String(metricsPort),
        PERISCOPE_PUBLIC_URL: `http://localhost:${port}`,
        // On disk, as a deployed server keeps it (a volume), not beside the control plane's state
        // in /dev/shm: recordings written there are copies into fresh RAM pages (≈ 1–3 ms/MiB on
        // this VM, the bench's largest recording cost) and O_DIRECT does not bypass them.
        PERISCOPE_DATA_DIR: join(work, 'data'),
        PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
        PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${tunnelPort}`,
        PERISCOPE_LOG_LEVEL: 'warn',
        ...opts.env,
      },
      (line) => {
        const m = /Debugger listening on (ws:\/\/\S+)/.exec(line);
        if (m?.[1]) inspectorUrl = m[1];
        else if (!/Debugger|For help, see/.test(line)) processLog(`[server] ${line}`);
      },
    );
    children.push(server);
    await waitHttp(`http://127.0.0.1:${metricsPort}/readyz`, 60_000, () => server.exitCode === null);

    const base = `http://127.0.0.1:${port}`;
    const cookie = await devLogin(base, 'admin');
    const minted = await fetch(`${base}/api/agents/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie },
      body: JSON.stringify({ cluster: 'local-agent' }),
    });
    if (minted.status !== 201) throw new Error(`minting the agent token failed: HTTP ${minted.status}`);
    const { token } = (await minted.json()) as { token: string };
    const agent = spawnNode(
      [
        // as the chart runs it (agent.maxSemiSpaceMiB); BENCH_AGENT_NODE_ARGS may override it
        '--max-semi-space-size=4',
        ...nodeArgs('BENCH_AGENT_NODE_ARGS'),
        '--inspect=127.0.0.1:0',
        '--enable-source-maps',
        join(root, 'apps/agent/dist/main.js'),
      ],
      {
        PERISCOPE_SERVER_URL: `https://127.0.0.1:${tunnelPort}`,
        PERISCOPE_REGISTRATION_URL: base,
        PERISCOPE_REGISTRATION_TOKEN: token,
        PERISCOPE_AGENT_NAMESPACE: 'periscope-system',
        PERISCOPE_CLUSTER_NAME: 'local-agent',
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_AGENT_LISTEN_ADDRESS: '127.0.0.1',
        PERISCOPE_AGENT_HEALTH_PORT: String(healthPort),
        // BENCH_AGENT_LOG_LEVEL=info shows each exec stream's bytes (with BENCH_VERBOSE)
        PERISCOPE_LOG_LEVEL: process.env['BENCH_AGENT_LOG_LEVEL'] ?? 'warn',
        KUBECONFIG: cluster.info.adminKubeconfig,
      },
      (line) => {
        const m = /Debugger listening on (ws:\/\/\S+)/.exec(line);
        if (m?.[1]) agentInspectorUrl = m[1];
        else if (!/Debugger|For help, see/.test(line)) processLog(`[agent] ${line}`);
      },
    );
    children.push(agent);
    await waitHttp(`http://127.0.0.1:${healthPort}/readyz`, 60_000, () => agent.exitCode === null);
    if (inspectorUrl === '' || agentInspectorUrl === '')
      throw new Error('the server or the agent did not print its inspector URL');
    return {
      base,
      opsBase: `http://127.0.0.1:${metricsPort}`,
      agentBase: `http://127.0.0.1:${healthPort}`,
      origin: `http://localhost:${port}`,
      port,
      tunnelPort,
      cluster,
      cookie,
      serverPid: server.pid ?? 0,
      agentPid: agent.pid ?? 0,
      inspectorUrl,
      agentInspectorUrl,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
