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
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { stringify } from 'yaml';

import { shellNamespaceRbac } from '../cluster-ops/shell-rbac';
import { ensureBinaries } from '../k8s/binaries';
import { startTestCluster, type TestCluster } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { assembleOverlay, bundleShellPrograms, readShellImageLayout } from '../shell/image-layout';
import { devLogin } from '../support/dev-login';

const root = resolve(__dirname, '../..');

export interface DevUser {
  subject: string;
  email: string;
  groups: string[];
}

export const DEV_USERS: DevUser[] = [
  { subject: 'admin', email: 'admin@periscope.local', groups: ['platform-admins'] },
  { subject: 'reader', email: 'reader@periscope.local', groups: ['developers'] },
];

export interface SystemOptions {
  /** HTTP port of the server; 0 (default) picks a free one. */
  port?: number;
  /** Port of the agent tunnel listener; 0 (default) picks a free one. */
  tunnelPort?: number;
  /** Health port of the agent; 0 (default) picks a free one. */
  agentHealthPort?: number;
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
}

export interface RunningSystem {
  /** Browser URL, `http://localhost:<port>` (the origin the server allows for WebSockets). */
  url: string;
  port: number;
  users: DevUser[];
  /** `local` (kubeconfig backend) and, with the agent, `local-agent` (agent backend). */
  clusters: string[];
  cluster: TestCluster;
  /** Server and agent process ids (for checks that nothing is left behind). */
  pids: () => number[];
  /** Stops the agent and the server (waiting for their teardown), then the control plane. */
  stop: () => Promise<void>;
}

function spawnNode(
  name: 'server' | 'agent',
  script: string,
  env: NodeJS.ProcessEnv,
  processLog: SystemOptions['processLog'],
): ChildProcess {
  const child = spawn(process.execPath, ['--enable-source-maps', script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const prefix = (chunk: Buffer): void => {
    for (const line of chunk.toString().split('\n')) if (line.trim() !== '') processLog?.(name, line);
  };
  child.stdout.on('data', prefix);
  child.stderr.on('data', prefix);
  return child;
}

async function waitHttp(url: string, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive()) throw new Error(`the process behind ${url} exited`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${url}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(kill);
      done();
    });
    child.kill('SIGTERM');
  });
}

export async function startSystem(opts: SystemOptions = {}): Promise<RunningSystem> {
  const say = opts.log ?? ((): void => undefined);
  const users = opts.users ?? DEV_USERS;
  const withAgent = opts.agent ?? true;
  const port = opts.port || (await freePort());
  const tunnelPort = opts.tunnelPort || (await freePort());
  const healthPort = opts.agentHealthPort || (await freePort());

  say('starting the local Kubernetes control plane (the first run builds it from source: 5-25 min)');
  // The node runs the shell image's real files: the bundled programs, the built kubectl and helm.
  const layout = readShellImageLayout();
  const work = mkdtempSync(join(tmpdir(), 'periscope-system-'));
  const overlay = join(work, 'shell-image');
  mkdirSync(overlay);
  const bins = ensureBinaries({ quiet: true });
  assembleOverlay(overlay, layout, {
    bundles: bundleShellPrograms(join(work, 'shell-dist')),
    tools: { kubectl: bins.kubectl, helm: bins.helm },
  });
  const shellImage = `${layout.image}:0.1.0`;
  const cluster = await startTestCluster({ log: say, imageMap: { [layout.image]: overlay } });

  const children: { name: 'server' | 'agent'; child: ChildProcess }[] = [];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // The agent first (the server then sees the tunnel drop), then the server, which tears
      // down open sessions through the still-running control plane.
      for (const { child } of [...children].reverse()) await terminate(child, 15_000);
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
        authorization: { mode: 'tier', groupTiers: { 'platform-admins': 'admin', developers: 'read' } },
        dev: { users },
      }),
    );
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

    const watch = (name: 'server' | 'agent', child: ChildProcess): void => {
      children.push({ name, child });
      child.on('exit', (code) => {
        if (stopping === undefined) opts.onUnexpectedExit?.(name, code);
      });
    };

    const server = spawnNode(
      'server',
      join(root, 'apps/server/dist/main.js'),
      {
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_CLUSTER_SHELL_IMAGE: shellImage,
        PERISCOPE_HTTP_PORT: String(port),
        PERISCOPE_PUBLIC_URL: `http://localhost:${port}`,
        PERISCOPE_DATA_DIR: join(dir, 'data'),
        PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
        PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${tunnelPort}`,
        PERISCOPE_LOG_LEVEL: 'warn',
        ...opts.env,
      },
      opts.processLog,
    );
    watch('server', server);
    await waitHttp(`http://127.0.0.1:${port}/readyz`, 60_000, () => server.exitCode === null);

    if (withAgent) {
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
      const agent = spawnNode(
        'agent',
        join(root, 'apps/agent/dist/main.js'),
        {
          PERISCOPE_SERVER_URL: `https://127.0.0.1:${tunnelPort}`,
          PERISCOPE_REGISTRATION_URL: `http://127.0.0.1:${port}`,
          PERISCOPE_REGISTRATION_TOKEN: token,
          PERISCOPE_AGENT_NAMESPACE: 'periscope-system',
          PERISCOPE_CLUSTER_NAME: 'local-agent',
          PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
          PERISCOPE_AGENT_LISTEN_ADDRESS: '127.0.0.1',
          PERISCOPE_AGENT_HEALTH_PORT: String(healthPort),
          PERISCOPE_LOG_LEVEL: 'warn',
          KUBECONFIG: cluster.info.adminKubeconfig,
        },
        opts.processLog,
      );
      watch('agent', agent);
      await waitHttp(`http://127.0.0.1:${healthPort}/readyz`, 60_000, () => agent.exitCode === null);
    }
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    url: `http://localhost:${port}`,
    port,
    users,
    clusters: withAgent ? ['local', 'local-agent'] : ['local'],
    cluster,
    pids: () => children.map((c) => c.child.pid ?? 0).filter((p) => p > 0),
    stop,
  };
}
