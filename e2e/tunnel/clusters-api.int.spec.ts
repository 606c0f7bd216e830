import 'reflect-metadata';

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import type { AgentApp } from '../../apps/agent/src/agent-app';
import { ClusterRegistry } from '../../apps/server/src/clusters/cluster-registry.service';
import { createServerApp } from '../../apps/server/src/server-app';
import { TestClusterClient } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { until } from '../support/wait';
import { devLogin } from '../support/dev-login';
import { mintAgentToken, startTestAgent } from '../support/test-agent';
import { testServerConfig } from '../support/test-server';

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
      testServerConfig(dir, {
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_CLUSTER_SHELL_NAMESPACE: ns,
        PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
        PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${tunnelPort}`,
      }),
    );
    await server.listen(0, '127.0.0.1');
    base = await server.getUrl();
    cookie = await devLogin(base, 'root');
    const token = await mintAgentToken(base, { cookie }, 'edge-1');
    agent = await startTestAgent({
      serverUrl: `https://127.0.0.1:${tunnelPort}`,
      registrationUrl: base,
      cluster: 'edge-1',
      token,
      namespace: ns,
    });
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
