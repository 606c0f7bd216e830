/**
 * The whole system on this machine: a local Kubernetes control plane whose node runs the shell
 * image's real files, the central server (built `apps/server/dist`, serving the built web UI;
 * dev login, tier authorization, cluster shell on) and, optionally, one agent registered through
 * the real token flow. Used by `npm start` (e2e/system/start-system.ts) and by the browser tests.
 *
 * It always starts its own control plane: the shell image is mapped into the node at start
 * (`--image-map`), which the shared cluster of the integration tests does not have. Starting one
 * takes a few seconds once the binaries are cached.
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
import {
  assembleShellImage,
  DEV_USERS,
  grantReadTierView,
  writeDevAuthFile,
  type DevUser,
} from '../support/local-stack';
import { spawnNode, terminate, waitHttp } from '../support/node-process';
import { TcpProxy } from '../support/tcp-proxy';

const root = resolve(__dirname, '../..');

export { DEV_USERS, type DevUser };

export interface SystemOptions {
  /** HTTP port of the server; 0 (default) picks a free one. */
  port?: number;
  /** Port of the agent tunnel listener; 0 (default) picks a free one. */
  tunnelPort?: number;
  /** Health port of the agent; 0 (default) picks a free one. */
  agentHealthPort?: number;
  /** Ops port of the server (/metrics, /readyz); 0 (default) picks a free one. */
  metricsPort?: number;
  /** Start the agent of the `local-agent` cluster (default true). */
  agent?: boolean;
  /** Extra environment of the server process (wins over the defaults). */
  env?: Record<string, string>;
  /** Progress lines of this module. */
  log?: (line: string) => void;
  /** Output lines of the server and agent processes (default: dropped). */
  processLog?: (name: 'server' | 'agent', line: string) => void;
  /** Called when the server or the agent exits while the system is running (not during stop()). */
  onUnexpectedExit?: (name: 'server' | 'agent', code: number | null) => void;
  users?: DevUser[];
  /** Extra environment of the agent process (wins over the defaults). */
  agentEnv?: Record<string, string>;
  /**
   * Put a loopback TCP proxy between the agent and the tunnel listener (default false), so a
   * test can cut the tunnel (`RunningSystem.tunnelProxy`). The agent dials the proxy.
   */
  tunnelProxy?: boolean;
}

export type SystemProcess = 'server' | 'agent';

export interface RunningSystem {
  /** Browser URL, `http://localhost:<port>` (the origin the server allows for WebSockets). */
  url: string;
  port: number;
  /** The server's ops listener (`http://127.0.0.1:<port>`): /metrics, /readyz. */
  opsUrl: string;
  users: DevUser[];
  /** `local` (kubeconfig backend) and, with the agent, `local-agent` (agent backend). */
  clusters: string[];
  cluster: TestCluster;
  /** Server and agent process ids (for checks that nothing is left behind). */
  pids: () => number[];
  /** Stops the agent and the server (waiting for their teardown), then the control plane. */
  stop: () => Promise<void>;
  /** The server's data directory (SQLite audit store, agent CA); kept across restarts. */
  dataDir: string;
  /** The running server's or agent's process id, undefined while it is stopped. */
  pid: (name: SystemProcess) => number | undefined;
  /**
   * Stops the server or the agent with `signal` (default SIGKILL: a crash; SIGTERM: a clean
   * stop, SIGKILL after 15 s) and resolves once it has exited. Not reported as unexpected.
   */
  kill: (name: SystemProcess, signal?: NodeJS.Signals) => Promise<void>;
  /**
   * Starts a stopped server or agent again with the same settings (the server on the same port
   * and data directory; the agent with its state Secret, so without registering again) and
   * resolves once it answers /readyz (for the agent: its tunnel is up).
   */
  start: (name: SystemProcess) => Promise<void>;
  /** kill(name, signal) then start(name). */
  restart: (name: SystemProcess, signal?: NodeJS.Signals) => Promise<void>;
  /** With `tunnelProxy`: the proxy the agent's tunnel goes through. */
  tunnelProxy: TcpProxy | undefined;
}

export async function startSystem(opts: SystemOptions = {}): Promise<RunningSystem> {
  const say = opts.log ?? ((): void => undefined);
  const users = opts.users ?? DEV_USERS;
  const withAgent = opts.agent ?? true;
  const port = opts.port || (await freePort());
  const tunnelPort = opts.tunnelPort || (await freePort());
  const healthPort = opts.agentHealthPort || (await freePort());
  const metricsPort = opts.metricsPort || (await freePort());

  say('starting the local Kubernetes control plane (the first run builds it from source: 5-25 min)');
  // The node runs the shell image's real files: the bundled programs, the built kubectl and helm.
  const work = mkdtempSync(join(tmpdir(), 'periscope-system-'));
  const { shellImage, imageMap } = assembleShellImage(work);
  const cluster = await startTestCluster({ log: say, imageMap });

  const children: { name: 'server' | 'agent'; child: ChildProcess }[] = [];
  /** Processes stopped on purpose (kill()), whose exit is not unexpected. */
  const expectedExits = new WeakSet<ChildProcess>();
  let proxy: TcpProxy | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // The agent first (the server then sees the tunnel drop), then the server, which tears
      // down open sessions through the still-running control plane.
      for (const { child } of [...children].reverse()) await terminate(child, 15_000);
      await proxy?.stop();
      await cluster.stop();
      rmSync(work, { recursive: true, force: true });
    })();
    return stopping;
  };

  const dir = join(cluster.info.stateDir, 'periscope');
  const dataDir = join(dir, 'data');
  const env: Record<SystemProcess, NodeJS.ProcessEnv> = { server: {}, agent: {} };
  const scripts: Record<SystemProcess, string> = {
    server: join(root, 'apps/server/dist/main.js'),
    agent: join(root, 'apps/agent/dist/main.js'),
  };
  const readyUrl: Record<SystemProcess, string> = {
    server: `http://127.0.0.1:${metricsPort}/readyz`,
    agent: `http://127.0.0.1:${healthPort}/readyz`,
  };
  const current = (name: SystemProcess): ChildProcess | undefined => {
    const c = children.find((e) => e.name === name)?.child;
    return c && c.exitCode === null && c.signalCode === null ? c : undefined;
  };
  const launch = async (name: SystemProcess): Promise<void> => {
    const child = spawnNode(['--enable-source-maps', scripts[name]], env[name], (line) => {
      opts.processLog?.(name, line);
    });
    // One entry per name (the latest process), in start order: server, then agent.
    const at = children.findIndex((e) => e.name === name);
    if (at >= 0) children[at] = { name, child };
    else children.push({ name, child });
    child.on('exit', (code) => {
      if (stopping === undefined && !expectedExits.has(child)) opts.onUnexpectedExit?.(name, code);
    });
    await waitHttp(readyUrl[name], 60_000, () => child.exitCode === null && child.signalCode === null);
  };

  try {
    await cluster.createNamespace('periscope-system');
    await cluster.apply(shellNamespaceRbac('periscope-system', ['admin'], { admin: 'cluster-admin' }));
    await grantReadTierView(cluster);
    mkdirSync(dir, { recursive: true });
    writeDevAuthFile(join(dir, 'auth.yaml'), users);
    const clusterEntries: Record<string, unknown>[] = [
      {
        name: 'local',
        backend: 'kubeconfig',
        kubeconfigPath: cluster.info.adminKubeconfig,
        environment: 'dev',
      },
      { name: 'local-agent', backend: 'agent', environment: 'dev' },
    ];
    writeFileSync(join(dir, 'clusters.yaml'), stringify({ clusters: clusterEntries }));

    env.server = {
      PERISCOPE_AUTH_MODE: 'dev',
      PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
      PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
      PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
      PERISCOPE_CLUSTER_SHELL_IMAGE: shellImage,
      PERISCOPE_HTTP_PORT: String(port),
      PERISCOPE_METRICS_PORT: String(metricsPort),
      PERISCOPE_PUBLIC_URL: `http://localhost:${port}`,
      PERISCOPE_DATA_DIR: dataDir,
      PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
      PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${tunnelPort}`,
      PERISCOPE_LOG_LEVEL: 'warn',
      ...opts.env,
    };
    await launch('server');

    if (withAgent) {
      let agentTunnelPort = tunnelPort;
      if (opts.tunnelProxy === true) {
        proxy = new TcpProxy({ host: '127.0.0.1', port: tunnelPort });
        await proxy.start();
        agentTunnelPort = proxy.port;
      }
      // The agent registers through the real flow: an admin mints a single-use token for it.
      const admin = users.find((u) => u.groups.includes('platform-admins'))?.subject ?? 'admin';
      const cookie = await devLogin(`http://127.0.0.1:${port}`, admin);
      const minted = await fetch(`http://127.0.0.1:${port}/api/agents/tokens`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie },
        body: JSON.stringify({ cluster: 'local-agent' }),
      });
      if (minted.status !== 201)
        throw new Error(`minting the agent token failed: HTTP ${minted.status} ${await minted.text()}`);
      const { token } = (await minted.json()) as { token: string };
      env.agent = {
        PERISCOPE_SERVER_URL: `https://127.0.0.1:${agentTunnelPort}`,
        PERISCOPE_REGISTRATION_URL: `http://127.0.0.1:${port}`,
        PERISCOPE_REGISTRATION_TOKEN: token,
        PERISCOPE_AGENT_NAMESPACE: 'periscope-system',
        PERISCOPE_CLUSTER_NAME: 'local-agent',
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_AGENT_LISTEN_ADDRESS: '127.0.0.1',
        PERISCOPE_AGENT_HEALTH_PORT: String(healthPort),
        PERISCOPE_LOG_LEVEL: 'warn',
        KUBECONFIG: cluster.info.adminKubeconfig,
        ...opts.agentEnv,
      };
      await launch('agent');
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const kill = async (name: SystemProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const child = current(name);
    if (!child) return;
    expectedExits.add(child);
    if (signal === 'SIGTERM') {
      await terminate(child, 15_000);
      return;
    }
    await new Promise<void>((done) => {
      child.once('exit', () => {
        done();
      });
      child.kill(signal);
    });
  };
  const start = async (name: SystemProcess): Promise<void> => {
    if (stopping !== undefined) throw new Error('the system is stopping');
    if (name === 'agent' && !withAgent) throw new Error('this system has no agent');
    if (current(name)) throw new Error(`the ${name} is already running`);
    await launch(name);
  };

  return {
    url: `http://localhost:${port}`,
    port,
    opsUrl: `http://127.0.0.1:${metricsPort}`,
    users,
    clusters: withAgent ? ['local', 'local-agent'] : ['local'],
    cluster,
    pids: () => children.map((c) => c.child.pid ?? 0).filter((p) => p > 0),
    stop,
    dataDir,
    pid: (name) => current(name)?.pid,
    kill,
    start,
    restart: async (name, signal) => {
      await kill(name, signal);
      await start(name);
    },
    tunnelProxy: proxy,
  };
}
