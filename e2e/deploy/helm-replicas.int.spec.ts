/**
 * In-cluster deployment check with two server replicas (issue 18, Helm): the `periscope` chart
 * with `replicaCount: 2` and the HA settings (Redis, PostgreSQL, session key, replica secret in
 * one existing Secret, as docs/helm-charts.md "Several replicas" recipes it), on the same set-up
 * as helm-install.int.spec.ts (helm-deploy.ts: OCI images of `npm run images`, two local control
 * planes, the agent chart on `edge`). A real redis-server and PostgreSQL run on 127.0.0.1, which
 * the pods reach as any host service. Each server pod has its own loopback address (the local
 * node's pod range), listens there, and advertises it as PERISCOPE_REPLICA_URL (the chart's
 * `http://$(POD_IP):8080`), which is where the other replica forwards to.
 *
 * Checked: both pods Ready at distinct pod IPs; the agent's tunnel is held by one of them (the
 * same answer from both); a cluster shell on `edge` opened through the replica WITHOUT the tunnel
 * runs (forwarded to the owner) and ends cleanly with its pod and Secret gone; the live session
 * list, the agents and the audit answer the same through both replicas.
 */
import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { TestCluster } from '../k8s/cluster';
import { startPostgres, type PostgresServer } from '../support/postgres-server';
import { startRedisServer, type TestRedis } from '../support/redis-server';
import { AGENT_NS, deployLog, HelmDeployment, SERVER_NS, type PodAddress } from './helm-deploy';

const HA_SECRET = 'periscope-ha';

describe('two helm-installed server replicas on Redis and PostgreSQL', () => {
  const d = new HelmDeployment();
  let redis: TestRedis | undefined;
  let pg: PostgresServer | undefined;
  let replicas: PodAddress[] = [];

  beforeAll(async () => {
    const started = Date.now();
    // Redis and PostgreSQL start while the images and control planes come up.
    const deps = Promise.all([
      startRedisServer({ password: randomBytes(18).toString('hex') }).then((r) => (redis = r)),
      startPostgres({ startTimeoutMs: 90_000 }).then((p) => (pg = p)),
    ]);
    await d.deploy({
      serverReplicas: 2,
      beforeServer: async (hub) => {
        await deps;
        deployLog(`redis-server and PostgreSQL up after ${Date.now() - started} ms`);
        const databaseUrl = await pg!.createDatabase('periscope');
        // The chart's recipe: one Secret with the four keys, ha.existingSecret naming it.
        await hub.kubectlOk([
          '-n',
          SERVER_NS,
          'create',
          'secret',
          'generic',
          HA_SECRET,
          `--from-literal=redis-url=${redis!.url}`,
          `--from-literal=database-url=${databaseUrl}`,
          `--from-literal=session-key=${randomBytes(32).toString('base64')}`,
          `--from-literal=replica-secret=${randomBytes(48).toString('base64')}`,
        ]);
      },
      serverValues: { replicaCount: 2, ha: { existingSecret: HA_SECRET } },
    });
    replicas = await d.serverPods();
  }, 45 * 60_000); // a cold image build (two mmdebstrap runs, two npm ci) takes minutes

  afterAll(async () => {
    await d.stop();
    await Promise.all([redis?.stop(), pg?.stop()]);
  }, 300_000);

  const url = (pod: PodAddress): string => HelmDeployment.serverURL(pod.ip);
  const get = async (pod: PodAddress, path: string): Promise<unknown> => {
    const res = await fetch(`${url(pod)}${path}`, { headers: { cookie: d.cookie } });
    expect(res.status, `${pod.name} ${path}: ${await res.clone().text()}`).toBe(200);
    return res.json();
  };
  /**
   * The `edge` agent as a replica reports it: which replica holds its tunnel, since when (the
   * live measures, round-trip time and open streams, are the holder's and change by the second).
   */
  const edgeAgent = async (
    pod: PodAddress,
  ): Promise<{
    connected: boolean;
    replica: string | null;
    connectedSince: string | null;
    version: string;
  }> => {
    const { agents } = (await get(pod, '/api/agents')) as {
      agents: {
        cluster: string;
        connected: boolean;
        replica: string | null;
        connectedSince: string | null;
        version: string;
      }[];
    };
    const edge = agents.find((a) => a.cluster === 'edge');
    if (edge === undefined) throw new Error(`${pod.name} lists no agent of edge: ${JSON.stringify(agents)}`);
    const { connected, replica, connectedSince, version } = edge;
    return { connected, replica, connectedSince, version };
  };

  it('runs two Ready server pods, each listening on its own pod IP with its own replica URL', async () => {
    expect(replicas).toHaveLength(2);
    expect(replicas.every((p) => p.ready)).toBe(true);
    const ips = replicas.map((p) => p.ip);
    for (const ip of ips) expect(ip).toMatch(/^127\.1\.\d+\.\d+$/);
    expect(new Set(ips).size).toBe(2);
    for (const pod of replicas) {
      expect((await fetch(`${url(pod)}/healthz`)).status, pod.name).toBe(200);
      expect((await fetch(`http://${pod.ip}:${d.metricsPort}/readyz`)).status, pod.name).toBe(200);
      // The downward API gave each pod its own address: the URL the other replica forwards to.
      const env = JSON.parse(
        await d.hub!.kubectlOk([
          '-n',
          SERVER_NS,
          'exec',
          pod.name,
          '--',
          'node',
          '-e',
          'console.log(JSON.stringify(process.env))',
        ]),
      ) as Record<string, string>;
      expect(env['PERISCOPE_REPLICA_URL']).toBe(`http://${pod.ip}:8080`);
      expect(env['PERISCOPE_REPLICA_ID']).toBe(pod.name);
    }
  });

  it("holds the agent's tunnel on one replica, and both replicas say which", async () => {
    const views = await Promise.all(replicas.map(edgeAgent));
    expect(views[0]).toEqual(views[1]);
    expect(views[0]!.connected).toBe(true);
    expect(replicas.map((p) => p.name)).toContain(views[0]!.replica);
  });

  it('runs a cluster shell on the agent cluster through the replica without the tunnel (forwarded), and ends it cleanly', async () => {
    const owner = (await edgeAgent(replicas[0]!)).replica;
    const other = replicas.find((p) => p.name !== owner)!;
    const holder = replicas.find((p) => p.name === owner)!;
    deployLog(`tunnel on ${holder.name} (${holder.ip}); the shell goes through ${other.name} (${other.ip})`);
    await d.shellSession(
      'edge',
      d.edge as TestCluster,
      `system:serviceaccount:${AGENT_NS}:periscope-agent`,
      url(other),
      async (sessionId) => {
        // The live session is listed the same through both replicas.
        const lists = await Promise.all(
          replicas.map(async (pod) => {
            const { sessions } = (await get(pod, '/api/sessions')) as {
              sessions: { sessionId: string; cluster: string; kind: string }[];
            };
            return sessions
              .filter((s) => s.sessionId === sessionId)
              .map((s) => [s.sessionId, s.cluster, s.kind]);
          }),
        );
        expect(lists[0]).toHaveLength(1);
        expect(lists[0]).toEqual(lists[1]);
      },
    );
    // The tunnel stayed where it was: the session really crossed from one replica to the other.
    expect((await edgeAgent(other)).replica).toBe(owner);
    // The audit store is PostgreSQL: both replicas answer the same.
    const audits = await Promise.all(
      replicas.map(async (pod) => {
        const { events } = (await get(pod, '/api/audit?cluster=edge')) as {
          events: { verb: string; session_id?: string; sessionId?: string }[];
        };
        return events.map((e) => e.verb).sort();
      }),
    );
    expect(audits[0]).toEqual(audits[1]);
    expect(audits[0]).toEqual(expect.arrayContaining(['cluster_shell_close', 'cluster_shell_open']));
  });
});
