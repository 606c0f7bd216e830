import 'reflect-metadata';

import { randomBytes } from 'node:crypto';
import { request } from 'node:http';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { devLogin } from '../support/dev-login';
import { startRedisServer, type TestRedis } from '../support/redis-server';
import { TcpProxy } from '../support/tcp-proxy';
import {
  sharedRedisReplicaEnv,
  startTestServer,
  testServerConfig,
  writeConfigDir,
  type TestServer,
} from '../support/test-server';

const ORIGIN = 'http://localhost:8080';

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function get(url: string, cookie?: string): Promise<Answer> {
  const res = await fetch(url, { headers: cookie === undefined ? {} : { cookie } });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** A WebSocket upgrade as a browser sends it; resolves the refusal (status and JSON body) or 101. */
function upgrade(base: string, path: string, cookie: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const u = new URL(path, base);
    const req = request({
      host: u.hostname,
      port: u.port,
      path: `${u.pathname}${u.search}`,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        origin: ORIGIN,
        cookie,
      },
      timeout: 10_000,
    });
    req.on('timeout', () => req.destroy(new Error('no answer to the upgrade within 10 s')));
    req.on('error', reject);
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      resolve({ status: 101, body: {} });
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
      });
    });
    req.end();
  });
}

/**
 * Two real server instances on one redis-server reached through a TCP proxy that the test cuts:
 * while Redis does not answer, a signed-in request (HTTP or terminal upgrade) gets 503
 * E_UNAVAILABLE with `reason: shared_state_unavailable`, never the 401 that would send the person
 * to sign in again; once the network is back the same cookie works on both, no new sign-in.
 */
describe('two server replicas while Redis is away: 503, not signed out', () => {
  let redis: TestRedis;
  let proxy: TcpProxy;
  const servers: TestServer[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
    proxy = new TcpProxy({ host: '127.0.0.1', port: redis.port });
    await proxy.start();
    for (const replica of ['away-a', 'away-b']) {
      const dir = writeConfigDir(`redis-away-${replica}`, inject('cluster').adminKubeconfig, {
        groupTiers: { admins: 'admin' },
        users: [{ subject: 'alice@example.com', groups: ['admins'] }],
      });
      servers.push(
        await startTestServer(
          testServerConfig(
            dir,
            sharedRedisReplicaEnv(`redis://127.0.0.1:${String(proxy.port)}/0`, replica, ORIGIN),
          ),
        ),
      );
    }
  }, 120_000);

  afterAll(async () => {
    proxy.restore();
    for (const s of servers) await s.stop();
    await proxy.stop();
    await redis.stop();
  });

  it('answers 503 E_UNAVAILABLE (shared_state_unavailable) on HTTP and WebSocket while Redis is cut; the same cookie works after', async () => {
    const [a, b] = servers as [TestServer, TestServer];
    const cookie = await devLogin(a.base, 'alice@example.com');
    for (const s of servers) expect((await get(`${s.base}/api/auth/whoami`, cookie)).status).toBe(200);

    proxy.sever();
    try {
      // The first lookup after the cut may still meet the connection closing: a few seconds at most.
      await expect
        .poll(async () => (await get(`${a.base}/api/auth/whoami`, cookie)).status, { timeout: 10_000 })
        .toBe(503);
      for (const s of servers) {
        const who = await get(`${s.base}/api/auth/whoami`, cookie);
        expect(who.status, JSON.stringify(who.body)).toBe(503);
        expect(who.body).toMatchObject({ error: 'E_UNAVAILABLE', reason: 'shared_state_unavailable' });
        expect(who.body['message']).toMatch(
          /Redis\) did not answer .*still signed in: try again in a few seconds/,
        );
        // A cluster path (answered by the sign-in check before any route): 503 too, not 401.
        const pods = await get(`${s.base}/api/clusters/lab/pods?namespace=default`, cookie);
        expect(pods.status, JSON.stringify(pods.body)).toBe(503);
        expect(pods.body['reason']).toBe('shared_state_unavailable');
        // A terminal socket: refused before the upgrade with the same 503 and body.
        const ws = await upgrade(s.base, '/api/clusters/lab/pods/default/app/exec?ticket=abc', cookie);
        expect(ws.status, JSON.stringify(ws.body)).toBe(503);
        expect(ws.body).toMatchObject({ error: 'E_UNAVAILABLE', reason: 'shared_state_unavailable' });
        // Without a sign-in there is nothing to look up: still 401.
        expect((await get(`${s.base}/api/auth/whoami`)).status).toBe(401);
        expect((await upgrade(s.base, '/api/clusters/lab/pods/default/app/exec?ticket=abc', '')).status).toBe(
          401,
        );
      }
    } finally {
      proxy.restore();
    }

    // Back: the same cookie, on both replicas, without a new sign-in (the client reconnects on its own).
    for (const s of [a, b])
      await expect
        .poll(async () => (await get(`${s.base}/api/auth/whoami`, cookie)).status, {
          timeout: 20_000,
          interval: 250,
        })
        .toBe(200);
    const me = await get(`${b.base}/api/auth/whoami`, cookie);
    expect(me.body['subject']).toBe('alice@example.com');
    // The terminal upgrade is the sign-in's again: past the sign-in check, the unknown ticket is refused (401 with its own message).
    const ws = await upgrade(a.base, '/api/clusters/lab/pods/default/app/exec?ticket=abc', cookie);
    expect(ws.status).toBe(401);
    expect(ws.body['message']).toMatch(/exec ticket is unknown, used or expired/);
  }, 90_000);
});
