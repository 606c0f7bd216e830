import 'reflect-metadata';

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { OpsListener } from '@periscope/observability';
import { Backoff, CHANNEL, type MuxStream } from '@periscope/protocol';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { newKeyAndCsr } from '../../apps/agent/src/identity/agent-keys';
import { register } from '../../apps/agent/src/identity/registration';
import { TunnelClient } from '../../apps/agent/src/tunnel/tunnel-client';
import { AgentCertificates } from '../../apps/server/src/agents/agent-certificates.service';
import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import type { AgentLink } from '../../apps/server/src/tunnel/agent-link';
import { AgentLinks } from '../../apps/server/src/tunnel/agent-links';
import { freePort } from '../k8s/ports';
import { devLogin } from '../support/dev-login';
import { until } from '../support/wait';
import { agentIdentity, log, newCa, testExec } from '../tunnel/tunnel-fixture';

/*
 * Stale, stolen and forged agent certificates against the real server (its registration API and
 * its mTLS Socket.IO tunnel listener on loopback) and the agent's real tunnel client: only the
 * one current certificate of a cluster connects; renewal and registration move "current"; an
 * admin revokes a cluster's agent from the API (audited, tunnel dropped at once). Refusals all
 * look the same from outside (401). The bystander cluster's tunnel echoes throughout.
 */
interface Identity {
  certPem: string;
  keyPem: string;
  caPem: string;
}

const REFUSED = { error: 'E_AUTH', message: 'agent connection refused' };

let server: NestExpressApplication;
let base: string;
let tunnelPort: number;
let ops: string;
let links: AgentLinks;
let certs: AgentCertificates;
let root: string;
let reader: string;
const clients: TunnelClient[] = [];

async function api(
  method: string,
  path: string,
  cookie?: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(cookie !== undefined ? { cookie } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** Registers an agent for `cluster` the way the agent does: admin token, own key, CSR. */
async function registerAgent(cluster: string): Promise<Identity> {
  const minted = await api('POST', '/api/agents/tokens', root, { cluster });
  expect(minted.status).toBe(201);
  const { keyPem, csrPem } = await newKeyAndCsr(cluster);
  const r = await register(base, { token: String(minted.body['token']), cluster, csr: csrPem });
  return { certPem: r.certificate, keyPem, caPem: r.caBundle };
}

/** The agent's tunnel client with this identity (it reconnects on its own, quickly). */
function startAgent(cluster: string, identity: () => Identity, logLines?: string[]): TunnelClient {
  const client = new TunnelClient({
    serverUrl: `https://127.0.0.1:${tunnelPort}`,
    cluster,
    identity,
    graceMs: 60_000,
    giveUpAfterMs: 600_000,
    onGiveUp: () => undefined,
    onOpen: testExec,
    hello: () => ({
      cluster,
      version: 'test',
      clusterShell: { enabled: false, tiers: ['admin'], namespace: 'periscope-system' },
      certNotAfter: new Date().toISOString(),
    }),
    log:
      logLines === undefined
        ? log
        : pino({ level: 'warn' }, { write: (line: string) => void logLines.push(line) }),
    backoff: new Backoff({ initialMs: 100, maxMs: 400, jitter: 0.5, healthyMs: 5000 }),
  });
  clients.push(client);
  client.start();
  return client;
}

function isConnected(cluster: string): boolean {
  return links.link(cluster)?.connected ?? false;
}

function link(cluster: string): AgentLink {
  const l = links.link(cluster);
  if (!l) throw new Error(`no link for ${cluster}`);
  return l;
}

async function connected(cluster: string): Promise<AgentLink> {
  return until(`${cluster} to be connected`, () => {
    const l = links.link(cluster);
    return l?.connected ? l : undefined;
  });
}

/**
 * A raw WebSocket upgrade to the tunnel listener with this client certificate (trusting the
 * real server certificate): 'accepted' (101) or the refusal's status and body.
 */
function probe(identity?: Omit<Identity, 'caPem'>): Promise<'accepted' | { status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port: tunnelPort,
      path: '/socket.io/?EIO=4&transport=websocket',
      ca: certs.ca?.certPem,
      ...(identity ? { cert: identity.certPem, key: identity.keyPem } : {}),
      agent: false,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        'Sec-WebSocket-Version': '13',
      },
    });
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      resolve('accepted');
    });
    req.on('response', (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: compared as text
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

async function refusals(): Promise<Record<string, number>> {
  const text = await (await fetch(`${ops}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^periscope_tunnel_refused_connections_total\{reason="([^"]+)"\} (\d+)$/gm))
    out[m[1] ?? ''] = Number(m[2]);
  return out;
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${ops}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** A server-side stream to the agent's `echo`: what is written comes back. */
function echoStream(
  l: AgentLink,
  sessionId: string,
): { stream: MuxStream; text: () => string; closed: () => boolean } {
  let text = '';
  let closed = false;
  const stream = l.mux.open(
    { namespace: 'ns', pod: 'p', container: 'c', tty: false, stdin: true, sessionId, command: ['echo'] },
    {
      onData: (ch, b) => {
        text += Buffer.from(b).toString();
        stream.consumed(ch, b.length);
      },
      onClose: () => {
        closed = true;
      },
    },
  );
  return { stream, text: () => text, closed: () => closed };
}

let bystander: ReturnType<typeof echoStream>;

async function bystanderEchoes(tag: string): Promise<void> {
  const word = `${tag}-${randomBytes(3).toString('hex')}`;
  bystander.stream.write(CHANNEL.stdin, Buffer.from(word));
  await until(`the bystander (edge-2) to echo after ${tag}`, () => bystander.text().includes(word), 15_000);
  expect(link('edge-2').connected).toBe(true);
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-agent-identity-'));
  writeFileSync(
    join(dir, 'auth.yaml'),
    'authorization:\n  mode: tier\n  groupTiers: { admins: admin, devs: read }\ndev:\n  users:\n    - { subject: root, groups: [admins] }\n    - { subject: dev, groups: [devs] }\n',
  );
  writeFileSync(
    join(dir, 'clusters.yaml'),
    'clusters:\n  - { name: edge-1, backend: agent }\n  - { name: edge-2, backend: agent }\n  - { name: lab, backend: kubeconfig, kubeconfigPath: /nonexistent }\n',
  );
  tunnelPort = await freePort();
  server = await createServerApp(
    loadServerConfig(
      {
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
        PERISCOPE_DATA_DIR: join(dir, 'data'),
        PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
        PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${tunnelPort}`,
        PERISCOPE_LOG_LEVEL: 'error',
      },
      (p) => readFileSync(p, 'utf8'),
    ),
  );
  await server.listen(0, '127.0.0.1');
  base = await server.getUrl();
  ops = await server.get(OpsListener).listen(0, '127.0.0.1');
  links = server.get(AgentLinks);
  certs = server.get(AgentCertificates);
  root = await devLogin(base, 'root');
  reader = await devLogin(base, 'dev');
  // The bystander cluster: registered, connected, with a live stream for the whole file.
  const edge2 = await registerAgent('edge-2');
  startAgent('edge-2', () => edge2);
  bystander = echoStream(await connected('edge-2'), 'bystander');
  await bystanderEchoes('start');
});

afterAll(async () => {
  for (const c of clients) c.stop();
  await server.close();
});

describe('agent certificates you can revoke', () => {
  let current: Identity;
  let agent: TunnelClient;
  const agentLog: string[] = [];

  it('lets the current certificate in and refuses forged, expired, other-cluster and unregistered ones alike (401)', async () => {
    current = await registerAgent('edge-1');
    agent = startAgent('edge-1', () => current);
    await connected('edge-1');
    expect(await probe(current)).toBe('accepted');

    const ca = certs.ca;
    if (!ca) throw new Error('no agent CA');
    const signed = async (cluster: string, validityDays?: number): Promise<Identity> => {
      const { keyPem, csrPem } = await newKeyAndCsr(cluster);
      return { certPem: await ca.signAgentCsr(csrPem, cluster, validityDays), keyPem, caPem: ca.certPem };
    };
    const before = await refusals();
    const attempts: [string, Omit<Identity, 'caPem'> | undefined][] = [
      ['forged (another CA)', await agentIdentity(await newCa(), 'edge-1')],
      ['expired', await signed('edge-1', -1)],
      ['for a cluster that is not an agent cluster', await signed('lab')],
      ['for an unknown cluster', await signed('edge-9')],
      // signed by the real CA, but never handed out by registration: not edge-1's current one
      ['not current for edge-1', await signed('edge-1')],
      ["edge-2's name, not edge-2's current certificate", await signed('edge-2')],
      ['no certificate', undefined],
    ];
    for (const [what, id] of attempts) expect(await probe(id), what).toEqual({ status: 401, body: REFUSED });
    const after = await refusals();
    const grew = (reason: string): number => (after[reason] ?? 0) - (before[reason] ?? 0);
    expect(grew('bad_chain')).toBe(2);
    expect(grew('unknown_cluster')).toBe(2);
    expect(grew('not_current')).toBe(2);
    expect(grew('no_certificate')).toBe(1);
    // still in
    expect(link('edge-1').connected).toBe(true);
    await bystanderEchoes('forged');
  });

  it('renewal moves "current" to the new certificate: the old one is refused from then on', async () => {
    const l = link('edge-1');
    const since = l.connectedSince;
    const { keyPem, csrPem } = await newKeyAndCsr('edge-1');
    const renewed = { certPem: await agent.renew(csrPem), keyPem, caPem: current.caPem };
    expect(l.connectedSince).toBe(since); // the tunnel stayed up
    const old = current;
    current = renewed;
    expect(await probe(old)).toEqual({ status: 401, body: REFUSED });
    expect(await probe(renewed)).toBe('accepted');
    const listed = (await api('GET', '/api/agents', root)).body['agents'] as Record<string, unknown>[];
    expect(listed.find((a) => a['cluster'] === 'edge-1')).toMatchObject({
      connected: true,
      revoked: false,
      certificate: { serial: expect.stringMatching(/^[0-9a-f]+$/) as unknown },
    });
    await bystanderEchoes('renewed');
  });

  it('registering again supersedes the old certificate: its tunnel drops and its streams are not handed back to it', async () => {
    const l = await connected('edge-1');
    const s = echoStream(l, 'before-reregistration');
    s.stream.write(CHANNEL.stdin, Buffer.from('ping-1'));
    await until('the echo', () => s.text().includes('ping-1'));
    const old = current;
    const fresh = await registerAgent('edge-1');
    await until('the superseded tunnel to drop', () => !link('edge-1').connected, 10_000);
    // The superseded agent keeps dialling (every 100-400 ms) and is refused each time.
    const refusedBefore = (await refusals())['not_current'] ?? 0;
    await until(
      'the superseded agent to be refused again',
      async () => ((await refusals())['not_current'] ?? 0) >= refusedBefore + 2,
      10_000,
    );
    expect(link('edge-1').connected).toBe(false);
    expect(await probe(old)).toEqual({ status: 401, body: REFUSED });
    expect(s.closed()).toBe(false); // kept for the grace period, for the current agent only
    agent.stop();
    current = fresh;
    agent = startAgent('edge-1', () => current, agentLog);
    const back = await connected('edge-1');
    // The new agent never had that stream: it is closed, not continued.
    await until('the old stream to be closed', () => s.closed(), 10_000);
    const t = echoStream(back, 'after-reregistration');
    t.stream.write(CHANNEL.stdin, Buffer.from('ping-2'));
    await until('the echo on the new agent', () => t.text().includes('ping-2'));
    t.stream.end(CHANNEL.stdin);
    await bystanderEchoes('superseded');
  });

  it("an admin revokes a cluster's agent: audited, tunnel dropped at once, reconnects refused", async () => {
    expect((await api('DELETE', '/api/agents/edge-1')).status).toBe(401);
    expect(await api('DELETE', '/api/agents/edge-1', reader)).toMatchObject({
      status: 403,
      body: { error: 'E_FORBIDDEN' },
    });
    expect((await api('DELETE', '/api/agents/lab', root)).status).toBe(404);
    const s = echoStream(await connected('edge-1'), 'before-revoke');
    s.stream.write(CHANNEL.stdin, Buffer.from('ping-3'));
    await until('the echo', () => s.text().includes('ping-3'));

    const revoked = await api('DELETE', '/api/agents/edge-1', root);
    expect(revoked).toMatchObject({
      status: 200,
      body: { cluster: 'edge-1', revoked: true, droppedConnection: true },
    });
    // at once: the stream ends and the link is down
    await until('the stream to end', () => s.closed(), 5_000);
    expect(isConnected('edge-1')).toBe(false);
    expect(await probe(current)).toEqual({ status: 401, body: REFUSED });
    const refusedBefore = (await refusals())['revoked'] ?? 0;
    await until(
      'the revoked agent to be refused again',
      async () => ((await refusals())['revoked'] ?? 0) >= refusedBefore + 2,
      10_000,
    );
    expect(isConnected('edge-1')).toBe(false);
    // The agent says what happened and what to do.
    expect(agentLog.join('\n')).toContain("the server refused this agent's certificate");
    expect(agentLog.join('\n')).toContain('register again with a new token');

    const audit = await api('GET', '/api/audit?verb=agent_revoke', root);
    const events = audit.body['events'] as Record<string, unknown>[];
    expect(events[0]).toMatchObject({ verb: 'agent_revoke', actor: 'root', cluster: 'edge-1' });
    const listed = (await api('GET', '/api/agents', root)).body['agents'] as Record<string, unknown>[];
    expect(listed.find((a) => a['cluster'] === 'edge-1')).toMatchObject({
      connected: false,
      revoked: true,
      revokedBy: 'root',
      certificate: null,
    });
    await bystanderEchoes('revoked');

    // Registering again (a new token) brings the cluster back.
    agent.stop();
    current = await registerAgent('edge-1');
    agent = startAgent('edge-1', () => current);
    await connected('edge-1');
    const again = (await api('GET', '/api/agents', root)).body['agents'] as Record<string, unknown>[];
    expect(again.find((a) => a['cluster'] === 'edge-1')).toMatchObject({ connected: true, revoked: false });
  });

  it('two connections with the one current certificate fight: logged and counted, and the newest wins', async () => {
    await connected('edge-1');
    const before = await metric('periscope_tunnel_contended_connections_total');
    const twin = startAgent('edge-1', () => current);
    await until(
      'the contention to be counted',
      async () => (await metric('periscope_tunnel_contended_connections_total')) > before,
      10_000,
    );
    twin.stop();
    await connected('edge-1');
    await bystanderEchoes('contended');
  });
});
