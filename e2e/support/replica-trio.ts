import 'reflect-metadata';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { Redis } from 'ioredis';

import type { AgentApp } from '../../apps/agent/src/agent-app';
import { createServerApp } from '../../apps/server/src/server-app';
import { AgentLinks } from '../../apps/server/src/tunnel/agent-links';
import { SHELL_NS, startShellCluster } from '../cluster-ops/shell-cluster';
import type { TestCluster } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { devLogin } from './dev-login';
import { startRedisServer, type TestRedis } from './redis-server';
import { TerminalClient } from './terminal-client';
import { mintAgentToken, startTestAgent } from './test-agent';
import { startExecPod, testServerConfig, writeConfigDir } from './test-server';
import { until } from './wait';

/**
 * Three in-process server replicas (`fwd-a`, `fwd-b`, `fwd-c`) sharing one real redis-server and
 * one data directory (the agent CA every replica trusts), a fresh local cluster whose node runs
 * the shell image, a pod `app` to exec into, and a real agent for cluster `edge` whose tunnel is
 * held by replica B. Clusters: `lab` (kubeconfig: any replica), `edge` and `ghost` (agent; ghost
 * has no agent). Used by e2e/server/replica-forwarding.int.spec.ts,
 * e2e/server/replica-views.int.spec.ts and e2e/bench/replica-forwarding-bench.ts.
 */

export const TRIO_ORIGIN = 'http://localhost:8080';
export const TRIO_USER = 'alice@example.com';
export const TRIO_SECRET = 'replica-forwarding-test-secret-0123456789';
export const TRIO_PREFIX = 'fwd:';

export interface TrioReplica {
  id: string;
  app: NestExpressApplication;
  base: string;
  ws: string;
  tunnelPort: number;
}

export interface ReplicaTrio {
  cluster: TestCluster;
  /** the namespace of the pod `app` (container `main`) */
  ns: string;
  replicas: TrioReplica[];
  replica(id: 'fwd-a' | 'fwd-b' | 'fwd-c'): TrioReplica;
  /** a Redis connection of the harness (reads and writes the shared state) */
  store: Redis;
  /** cookie and Origin of the signed-in admin */
  headers(): Record<string, string>;
  /** Opens a pod exec on `edge` through `via` (REST, then the socket), as the browser does. */
  openExec(
    via: TrioReplica,
    body: Record<string, unknown>,
  ): Promise<{ sessionId: string; client: TerminalClient }>;
  /** Stops the agent of `edge` (its tunnel on B drops); idempotent. */
  stopAgent(): Promise<void>;
  stop(): Promise<void>;
}

async function bounded(p: Promise<unknown> | undefined, ms = 30_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

export async function startReplicaTrio(binDir: string): Promise<ReplicaTrio> {
  const ns = `fwd-${Date.now().toString(36)}`;
  const redis: TestRedis = await startRedisServer();
  const store = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await store.connect();
  const env = await startShellCluster(binDir);
  const cluster = env.cluster;
  const replicas: TrioReplica[] = [];
  let agent: AgentApp | undefined;
  const savedKubeconfig = process.env['KUBECONFIG'];
  let cookie = '';
  const headers = (): Record<string, string> => ({ cookie, origin: TRIO_ORIGIN });
  const replica = (id: string): TrioReplica => {
    const r = replicas.find((x) => x.id === id);
    if (!r) throw new Error(`no replica ${id}`);
    return r;
  };
  const stopAgent = async (): Promise<void> => {
    const running = agent;
    agent = undefined;
    await bounded(running?.close());
  };
  const stop = async (): Promise<void> => {
    try {
      for (const r of replicas) await bounded(r.app.close());
      await stopAgent();
      store.disconnect();
      await redis.stop();
    } finally {
      if (savedKubeconfig === undefined) delete process.env['KUBECONFIG'];
      else process.env['KUBECONFIG'] = savedKubeconfig;
      await env.stop();
    }
  };
  try {
    await startExecPod(cluster, ns, [{ tier: 'admin', role: 'admin', name: 'fwd-admin' }]);
    const dir = writeConfigDir(
      'forwarding',
      cluster.info.adminKubeconfig,
      { groupTiers: { admins: 'admin' }, users: [{ subject: TRIO_USER, groups: ['admins'] }] },
      [
        `{ name: lab, backend: kubeconfig, kubeconfigPath: ${cluster.info.adminKubeconfig} }`,
        '{ name: edge, backend: agent }',
        '{ name: ghost, backend: agent }',
      ],
    );
    // One after the other: the first creates the agent CA, the others load it.
    for (const id of ['fwd-a', 'fwd-b', 'fwd-c']) {
      const [port, tunnelPort] = [await freePort(), await freePort()];
      const app = await createServerApp(
        testServerConfig(dir, {
          PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
          PERISCOPE_CLUSTER_SHELL_NAMESPACE: SHELL_NS,
          PERISCOPE_CLUSTER_SHELL_IMAGE: env.image,
          PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
          PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${tunnelPort}`,
          PERISCOPE_PUBLIC_URL: TRIO_ORIGIN,
          PERISCOPE_METRICS_PORT: '0',
          PERISCOPE_RESUME_GRACE_SECONDS: '30',
          PERISCOPE_RESUME_BUFFER_BYTES: String(4 * 1024 * 1024),
          PERISCOPE_REDIS_URL: redis.url,
          PERISCOPE_REDIS_KEY_PREFIX: TRIO_PREFIX,
          PERISCOPE_REPLICA_ID: id,
          PERISCOPE_REPLICA_URL: `http://127.0.0.1:${port}`,
          PERISCOPE_REPLICA_SECRET: TRIO_SECRET,
        }),
      );
      await app.listen(port, '127.0.0.1');
      const base = `http://127.0.0.1:${port}`;
      replicas.push({ id, app, base, ws: base.replace('http', 'ws'), tunnelPort });
    }
    const b = replica('fwd-b');
    cookie = await devLogin(replica('fwd-a').base, TRIO_USER);
    const token = await mintAgentToken(b.base, headers(), 'edge');
    process.env['KUBECONFIG'] = cluster.info.adminKubeconfig; // the agent loads its kubeconfig the default way
    agent = await startTestAgent({
      serverUrl: `https://127.0.0.1:${b.tunnelPort}`,
      registrationUrl: b.base,
      cluster: 'edge',
      token,
      namespace: SHELL_NS,
    });
    await until(
      'the agent tunnel on replica B',
      () => b.app.get(AgentLinks).link('edge')?.connected === true,
      60_000,
    );
    await until(
      'the tunnel owner record',
      async () => (await store.get(`${TRIO_PREFIX}own:agent:edge`)) === 'fwd-b',
      10_000,
    );
    for (const r of replicas)
      await until(
        `the address of ${r.id}`,
        async () => (await store.get(`${TRIO_PREFIX}replica:${r.id}`)) === r.base,
        10_000,
      );
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }

  const openExec = async (
    via: TrioReplica,
    body: Record<string, unknown>,
  ): Promise<{ sessionId: string; client: TerminalClient }> => {
    const res = await fetch(`${via.base}/api/clusters/edge/pods/${ns}/app/exec/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers() },
      body: JSON.stringify({ container: 'main', ...body }),
    });
    const text = await res.text();
    if (res.status !== 201)
      throw new Error(`opening a pod exec through ${via.id}: HTTP ${res.status} ${text}`);
    const { socketPath, sessionId } = JSON.parse(text) as { socketPath: string; sessionId: string };
    const client = new TerminalClient(`${via.ws}${socketPath}`, headers());
    await client.opened;
    return { sessionId, client };
  };

  return { cluster, ns, replicas, replica, store, headers, openExec, stopAgent, stop };
}
