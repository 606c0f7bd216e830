import 'reflect-metadata';

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createAgentApp, type AgentApp } from '../../apps/agent/src/agent-app';
import { loadAgentConfig } from '../../apps/agent/src/config/agent-config';
import { ClusterRegistry } from '../../apps/server/src/clusters/cluster-registry.service';
import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import { TestClusterClient } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { until } from '../support/wait';
import { devLogin } from '../support/dev-login';

const cluster = new TestClusterClient(inject('cluster'));
const ns = `clusters-${Date.now().toString(36)}`;

describe('GET /api/clusters', () => {
  let server: NestExpressApplication;
  let agent: AgentApp | undefined;
  let base: string;
  let cookie: string;

  beforeAll(async () => {
    await cluster.createNamespace(ns);
    process.env['KUBECONFIG'] = cluster.info.adminKubeconfig;
    const dir = mkdtempSync(join(tmpdir(), 'periscope-clusters-'));
    writeFileSync(
      join(dir, 'auth.yaml'),
      'authorization:\n  mode: tier\n  groupTiers: { admins: admin }\ndev:\n  users:\n    - { subject: root, groups: [admins] }\n',
    );
    writeFileSync(
      join(dir, 'clusters.yaml'),
      `clusters:\n  - { name: local, backend: kubeconfig, kubeconfigPath: ${cluster.info.adminKubeconfig}, environment: dev }\n  - { name: edge-1, backend: agent }\n  - { name: edge-2, backend: agent }\n  - { name: prod, backend: eks, arn: 'arn:aws:eks:eu-west-1:123456789012:cluster/prod', region: eu-west-1, exec: { enabled: false } }\n`,
    );
    const tunnelPort = await freePort();
    server = await createServerApp(
      loadServerConfig(
        {
          PERISCOPE_AUTH_MODE: 'dev',
          PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
          PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
          PERISCOPE_DATA_DIR: join(dir, 'data'),
          PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
          PERISCOPE_CLUSTER_SHELL_NAMESPACE: ns,
          PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
          PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${tunnelPort}`,
          PERISCOPE_LOG_LEVEL: 'warn',
        },
        (p) => readFileSync(p, 'utf8'),
      ),
    );
    await server.listen(0, '127.0.0.1');
    base = await server.getUrl();
    cookie = await devLogin(base, 'root');
    const minted = await fetch(`${base}/api/agents/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie },
      body: JSON.stringify({ cluster: 'edge-1' }),
    });
    const { token } = (await minted.json()) as { token: string };
    agent = await createAgentApp(
      loadAgentConfig({
        PERISCOPE_SERVER_URL: `https://127.0.0.1:${tunnelPort}`,
        PERISCOPE_REGISTRATION_URL: base,
        PERISCOPE_CLUSTER_NAME: 'edge-1',
        PERISCOPE_REGISTRATION_TOKEN: token,
        PERISCOPE_AGENT_NAMESPACE: ns,
        PERISCOPE_AGENT_LISTEN_ADDRESS: '127.0.0.1',
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_CLUSTER_SHELL_NAMESPACE: ns,
        PERISCOPE_LOG_LEVEL: 'warn',
      }),
    );
    await agent.listen(0, '127.0.0.1');
  });

  afterAll(async () => {
    await agent?.close();
    await server.close();
  });

  async function clusters(): Promise<Record<string, Record<string, unknown>>> {
    const res = await fetch(`${base}/api/clusters`, { headers: { cookie } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { clusters: Record<string, unknown>[] };
    return Object.fromEntries(body.clusters.map((c) => [String(c['name']), c]));
  }

  it('needs a signed-in user', async () => {
    expect((await fetch(`${base}/api/clusters`)).status).toBe(401);
  });

  it('reports backend, connection and whether the cluster shell is offered, with the reason when not', async () => {
    const c = await until('edge-1 connected', async () => {
      const all = await clusters();
      return (all['edge-1']?.['connection'] as { state: string }).state === 'connected' ? all : undefined;
    });
    expect(c['local']).toMatchObject({
      backend: 'kubeconfig',
      environment: 'dev',
      execEnabled: true,
      clusterShellEnabled: true,
      clusterShellMode: 'bash',
      connection: { state: 'direct' },
    });
    expect(c['edge-1']).toMatchObject({
      backend: 'agent',
      clusterShellEnabled: true,
      connection: { state: 'connected' },
    });
    expect(c['edge-2']).toMatchObject({
      backend: 'agent',
      clusterShellEnabled: false,
      clusterShellReason: 'the agent is not connected',
      connection: { state: 'never-connected' },
    });
    expect(c['prod']).toMatchObject({ backend: 'eks', execEnabled: false, clusterShellEnabled: true });
  });

  it('reaches direct and agent clusters through the same gateway calls', async () => {
    const registry = server.get(ClusterRegistry);
    for (const name of ['local', 'edge-1']) {
      const ca = await registry.gateway(name).clusterCa();
      expect(ca.caPem).toBe(cluster.info.caPem);
    }
  });
});
