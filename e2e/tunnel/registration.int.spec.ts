import 'reflect-metadata';

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { OpsListener } from '@periscope/observability';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createAgentApp, type AgentApp } from '../../apps/agent/src/agent-app';
import { loadAgentConfig } from '../../apps/agent/src/config/agent-config';
import { register, RegistrationError } from '../../apps/agent/src/identity/registration';
import { spkiPin } from '../../apps/server/src/agents/agent-ca';
import { AgentCertificates } from '../../apps/server/src/agents/agent-certificates.service';
import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import { AgentLinks } from '../../apps/server/src/tunnel/agent-links';
import { TestClusterClient } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { until } from '../support/wait';

const cluster = new TestClusterClient(inject('cluster'));
const ns = `agent-${Date.now().toString(36)}`;

describe('agent registration and tunnel through the real server and agent apps', () => {
  let server: NestExpressApplication;
  let base: string;
  let tunnelPort: number;
  const agents: AgentApp[] = [];
  const cookies: Record<string, string> = {};

  async function login(subject: string): Promise<string> {
    const res = await fetch(`${base}/api/auth/dev-login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ subject }),
    });
    expect(res.status).toBe(204);
    return (res.headers.get('set-cookie') ?? '').split(';')[0]!;
  }

  async function api(
    path: string,
    opts: { as?: string; body?: unknown } = {},
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${base}${path}`, {
      method: opts.body === undefined ? 'GET' : 'POST',
      headers: {
        'content-type': 'application/json',
        ...(opts.as !== undefined ? { cookie: cookies[opts.as]! } : {}),
      },
      ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  async function startAgent(env: Record<string, string>): Promise<AgentApp> {
    const app = await createAgentApp(
      loadAgentConfig({
        PERISCOPE_SERVER_URL: `https://127.0.0.1:${tunnelPort}`,
        PERISCOPE_REGISTRATION_URL: base,
        PERISCOPE_CLUSTER_NAME: 'edge-1',
        PERISCOPE_AGENT_NAMESPACE: ns,
        PERISCOPE_AGENT_LISTEN_ADDRESS: '127.0.0.1',
        PERISCOPE_LOG_LEVEL: 'warn',
        ...env,
      }),
    );
    agents.push(app);
    await app.listen(0, '127.0.0.1');
    return app;
  }

  beforeAll(async () => {
    await cluster.createNamespace(ns);
    // The agent finds its cluster the way client-node does outside a pod: through KUBECONFIG.
    process.env['KUBECONFIG'] = cluster.info.adminKubeconfig;
    const dir = mkdtempSync(join(tmpdir(), 'periscope-reg-'));
    writeFileSync(
      join(dir, 'auth.yaml'),
      'authorization:\n  mode: tier\n  groupTiers: { admins: admin, devs: read }\ndev:\n  users:\n    - { subject: root, groups: [admins] }\n    - { subject: dev, groups: [devs] }\n',
    );
    writeFileSync(
      join(dir, 'clusters.yaml'),
      'clusters:\n  - { name: edge-1, backend: agent }\n  - { name: edge-2, backend: agent }\n',
    );
    tunnelPort = await freePort();
    const config = loadServerConfig(
      {
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
        PERISCOPE_DATA_DIR: join(dir, 'data'),
        PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
        PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${tunnelPort}`,
        PERISCOPE_LOG_LEVEL: 'warn',
      },
      (p) => readFileSync(p, 'utf8'),
    );
    server = await createServerApp(config);
    await server.listen(0, '127.0.0.1');
    base = await server.getUrl();
    cookies['root'] = await login('root');
    cookies['dev'] = await login('dev');
  });

  afterAll(async () => {
    for (const a of agents) await a.close();
    await server.close();
  });

  it('lets only admins mint tokens, for agent clusters only', async () => {
    expect((await api('/api/agents/tokens', { body: { cluster: 'edge-1' } })).status).toBe(401);
    const reader = await api('/api/agents/tokens', { as: 'dev', body: { cluster: 'edge-1' } });
    expect(reader).toMatchObject({ status: 403, body: { error: 'E_FORBIDDEN' } });
    const unknown = await api('/api/agents/tokens', { as: 'root', body: { cluster: 'nope' } });
    expect(unknown).toMatchObject({ status: 400, body: { error: 'E_BAD_REQUEST' } });
    expect(String(unknown.body['message'])).toContain('edge-1, edge-2');
  });

  it('registers with a token, keeps its identity in a Secret and connects over mTLS', async () => {
    const minted = await api('/api/agents/tokens', { as: 'root', body: { cluster: 'edge-1' } });
    expect(minted.status).toBe(201);
    const token = String(minted.body['token']);
    const agent = await startAgent({ PERISCOPE_REGISTRATION_TOKEN: token });
    const listed = await until('the agent to be listed as connected', async () => {
      const r = await api('/api/agents', { as: 'root' });
      const a = (r.body['agents'] as Record<string, unknown>[]).find((x) => x['cluster'] === 'edge-1');
      return a?.['connected'] === true ? a : undefined;
    });
    expect(listed).toMatchObject({ cluster: 'edge-1', openStreams: 0, version: '0.1.0' });
    const withRtt = await until('a measured round trip', async () => {
      const a = ((await api('/api/agents', { as: 'root' })).body['agents'] as Record<string, unknown>[]).find(
        (x) => x['cluster'] === 'edge-1',
      );
      return typeof a?.['lastRttMs'] === 'number' ? a : undefined;
    });
    expect(withRtt['lastRttMs']).toBeGreaterThan(0);
    expect(Date.parse(String(listed['certificateNotAfter']))).toBeGreaterThan(Date.now() + 89 * 86_400_000);
    const secret = JSON.parse(
      await cluster.kubectlOk(['-n', ns, 'get', 'secret', 'periscope-agent-state', '-o', 'json']),
    ) as { data: Record<string, string> };
    const cert = new X509Certificate(Buffer.from(secret.data['tls.crt']!, 'base64'));
    expect(cert.subject).toBe('CN=edge-1');
    expect(Object.keys(secret.data).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key', 'tunnel-url']);
    expect((await fetch(`${await agent.getUrl()}/readyz`)).status).toBe(200);

    // The token is single-use and every failure looks the same from outside.
    const reuse = await fetch(`${base}/api/agents/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token, cluster: 'edge-1', csr: 'x' }),
    });
    expect(reuse.status).toBe(401);
    expect(await reuse.json()).toEqual({ error: 'E_AUTH', message: 'registration rejected' });
  });

  it('burns a token presented for another cluster', async () => {
    const token = String(
      (await api('/api/agents/tokens', { as: 'root', body: { cluster: 'edge-2' } })).body['token'],
    );
    const post = (cluster: string) =>
      fetch(`${base}/api/agents/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token, cluster, csr: 'x' }),
      });
    expect((await post('edge-1')).status).toBe(401);
    expect((await post('edge-2')).status).toBe(401);
  });

  it('joins the server and agent records of a request id', async () => {
    const link = server.get(AgentLinks).link('edge-1')!;
    await link.ping();
    const rid = link.ring
      .toArray()
      .filter((r) => r.op === 'ping')
      .pop()!.rid;
    const joined = await api(`/api/agents/edge-1/requests/${rid}`, { as: 'root' });
    expect(joined.status).toBe(200);
    expect(joined.body).toMatchObject({
      rid,
      cluster: 'edge-1',
      server: { rid, op: 'ping', outcome: 'ok' },
      agent: { rid, op: 'ping', outcome: 'ok' },
    });
    expect(
      (await api(`/api/agents/edge-1/requests/00000000-0000-7000-8000-000000000000`, { as: 'root' })).status,
    ).toBe(404);
  });

  it('exposes tunnel metrics on the ops listener', async () => {
    const ops = await server.get(OpsListener).listen(0, '127.0.0.1');
    const text = await (await fetch(`${ops}/metrics`)).text();
    expect(text).toMatch(/^periscope_tunnel_connected_agents 1$/m);
    expect(text).toMatch(/^periscope_tunnel_open_streams 0$/m);
    expect(text).toMatch(/^periscope_tunnel_request_seconds_count\{[^}]*op="ping"[^}]*\} [1-9]/m);
  });

  it('renews its certificate over the tunnel without dropping it', async () => {
    const runtime = agents[0]!.runtime!;
    const before = runtime.identity!.state.certPem;
    const since = server.get(AgentLinks).link('edge-1')!.connectedSince;
    await runtime.identity!.renew((csr) => runtime.tunnel!.renew(csr));
    expect(runtime.identity!.state.certPem).not.toBe(before);
    const secret = JSON.parse(
      await cluster.kubectlOk(['-n', ns, 'get', 'secret', 'periscope-agent-state', '-o', 'json']),
    ) as { data: Record<string, string> };
    expect(Buffer.from(secret.data['tls.crt']!, 'base64').toString()).toBe(runtime.identity!.state.certPem);
    expect(server.get(AgentLinks).link('edge-1')!.connectedSince).toBe(since);
  });

  it('restarts from its state Secret without a token and never overwrites it', async () => {
    const secretBefore = await cluster.kubectlOk([
      '-n',
      ns,
      'get',
      'secret',
      'periscope-agent-state',
      '-o',
      'jsonpath={.metadata.resourceVersion}',
    ]);
    await agents.shift()!.close();
    await until('the server to see the agent go', () => !server.get(AgentLinks).link('edge-1')!.connected);
    await startAgent({});
    await until('the agent to reconnect', () => server.get(AgentLinks).link('edge-1')!.connected);
    const secretAfter = await cluster.kubectlOk([
      '-n',
      ns,
      'get',
      'secret',
      'periscope-agent-state',
      '-o',
      'jsonpath={.metadata.resourceVersion}',
    ]);
    expect(secretAfter).toBe(secretBefore);
  });

  it('checks an SPKI pin before trusting a self-signed server', async () => {
    const certs = server.get(AgentCertificates);
    const url = `https://127.0.0.1:${tunnelPort}`;
    const body = { token: 'x', cluster: 'edge-1', csr: 'x' };
    // Pinned to the agent CA that issued the tunnel listener's certificate: TLS is trusted, the
    // (wrong) endpoint answers with an HTTP status, so the pinned connection itself worked.
    await expect(register(url, body, spkiPin(certs.ca!.certPem))).rejects.toThrow(/HTTP 404/);
    const wrong = register(url, body, `sha256:${'0'.repeat(64)}`);
    await expect(wrong).rejects.toBeInstanceOf(RegistrationError);
    await expect(wrong).rejects.toThrow(/matches the pin/);
    // Without a pin, a self-signed server is refused.
    await expect(register(url, body)).rejects.toThrow(/self-signed|unable to verify|certificate/);
  });
});
