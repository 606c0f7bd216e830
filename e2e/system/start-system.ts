/**
 * `npm start`: the embedded default. Starts the local control plane, the central server (dev
 * login, cluster shell enabled, tier authorization) and one agent, prints the URL and the users,
 * and stops everything on Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { stringify } from 'yaml';

import { shellNamespaceRbac } from '../cluster-ops/shell-rbac';
import { ensureBinaries } from '../k8s/binaries';
import { startTestCluster } from '../k8s/cluster';
import { assembleOverlay, bundleShellPrograms, readShellImageLayout } from '../shell/image-layout';
import { devLogin } from '../support/dev-login';

const root = resolve(__dirname, '../..');
const say = (l: string): void => {
  process.stderr.write(`[start] ${l}\n`);
};

const DEV_USERS = [
  { subject: 'admin', email: 'admin@periscope.local', groups: ['platform-admins'] },
  { subject: 'reader', email: 'reader@periscope.local', groups: ['developers'] },
];

function run(name: string, script: string, env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, ['--enable-source-maps', script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const prefix = (chunk: Buffer): void => {
    for (const line of chunk.toString().split('\n'))
      if (line.trim() !== '') process.stderr.write(`[${name}] ${line}\n`);
  };
  child.stdout.on('data', prefix);
  child.stderr.on('data', prefix);
  return child;
}

async function waitHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${url}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function main(): Promise<void> {
  const port = Number(process.env['PERISCOPE_HTTP_PORT'] ?? '8080');
  say('starting the local Kubernetes control plane (the first run builds it from source: 5-25 min)');
  // The node runs the shell image's real files: the bundled programs, the built kubectl and helm.
  const layout = readShellImageLayout();
  const work = mkdtempSync(join(tmpdir(), 'periscope-start-'));
  const overlay = join(work, 'shell-image');
  mkdirSync(overlay);
  const bins = ensureBinaries({ quiet: true });
  assembleOverlay(overlay, layout, {
    bundles: bundleShellPrograms(join(work, 'shell-dist')),
    tools: { kubectl: bins.kubectl, helm: bins.helm },
  });
  const shellImage = `${layout.image}:0.1.0`;
  const cluster = await startTestCluster({ log: say, imageMap: { [layout.image]: overlay } });
  await cluster.createNamespace('periscope-system');
  await cluster.apply(shellNamespaceRbac('periscope-system', ['admin'], { admin: 'cluster-admin' }));
  const dir = join(cluster.info.stateDir, 'periscope');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'auth.yaml'),
    stringify({
      authorization: { mode: 'tier', groupTiers: { 'platform-admins': 'admin', developers: 'read' } },
      dev: { users: DEV_USERS },
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
      ],
    }),
  );

  const children: ChildProcess[] = [];
  const stop = (code: number): void => {
    for (const c of children) c.kill('SIGTERM');
    void cluster.stop().finally(() => {
      rmSync(work, { recursive: true, force: true });
      process.exit(code);
    });
  };
  process.on('SIGINT', () => {
    stop(0);
  });
  process.on('SIGTERM', () => {
    stop(0);
  });

  const server = run('server', join(root, 'apps/server/dist/main.js'), {
    PERISCOPE_AUTH_MODE: 'dev',
    PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
    PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
    PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
    PERISCOPE_CLUSTER_SHELL_IMAGE: shellImage,
    PERISCOPE_HTTP_PORT: String(port),
    PERISCOPE_PUBLIC_URL: `http://localhost:${port}`,
    PERISCOPE_DATA_DIR: join(dir, 'data'),
    PERISCOPE_AGENT_TUNNEL_URL: 'https://127.0.0.1:8443',
    PERISCOPE_LOG_LEVEL: 'warn',
  });
  children.push(server);
  server.on('exit', (code) => {
    say(`server exited (${code ?? 'signal'})`);
    stop(1);
  });
  await waitHttp(`http://127.0.0.1:${port}/readyz`, 60_000);

  // The agent registers through the real flow: an admin mints a single-use token for it.
  const cookie = await devLogin(`http://127.0.0.1:${port}`, 'admin');
  const minted = await fetch(`http://127.0.0.1:${port}/api/agents/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie },
    body: JSON.stringify({ cluster: 'local-agent' }),
  });
  if (minted.status !== 201)
    throw new Error(`minting the agent token failed: HTTP ${minted.status} ${await minted.text()}`);
  const { token } = (await minted.json()) as { token: string };

  const agent = run('agent', join(root, 'apps/agent/dist/main.js'), {
    PERISCOPE_SERVER_URL: 'https://127.0.0.1:8443',
    PERISCOPE_REGISTRATION_URL: `http://127.0.0.1:${port}`,
    PERISCOPE_REGISTRATION_TOKEN: token,
    PERISCOPE_AGENT_NAMESPACE: 'periscope-system',
    PERISCOPE_CLUSTER_NAME: 'local-agent',
    PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
    PERISCOPE_AGENT_LISTEN_ADDRESS: '127.0.0.1',
    PERISCOPE_AGENT_HEALTH_PORT: '8081',
    PERISCOPE_LOG_LEVEL: 'warn',
    KUBECONFIG: cluster.info.adminKubeconfig,
  });
  children.push(agent);
  agent.on('exit', (code) => {
    say(`agent exited (${code ?? 'signal'})`);
    stop(1);
  });
  await waitHttp('http://127.0.0.1:8081/readyz', 60_000);

  say('');
  say(`Periscope is running: http://localhost:${port}`);
  say(`  dev users: ${DEV_USERS.map((u) => `${u.subject} (${u.groups.join(',')})`).join(', ')}`);
  say(`  local cluster: KUBECONFIG=${cluster.info.adminKubeconfig}`);
  say(
    '  a cluster shell in this terminal: npm run shell -- local   (or local-agent, through the agent tunnel)',
  );
  say('  Ctrl-C stops everything.');
}

main().catch((err: unknown) => {
  say(`failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
