import 'reflect-metadata';

import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';

import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import { OpsListener } from '@periscope/observability';
import { TestClusterClient } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { devLogin } from '../support/dev-login';
import { TerminalClient } from '../support/terminal-client';
import { testServerConfig, startExecPod, startTestServer, writeConfigDir } from '../support/test-server';
import { until } from '../support/wait';

/*
 * A hostile web page against the real server (dev mode on loopback, as `npm start` runs it, and an
 * https-fronted one): WebSocket upgrades without Origin, DNS rebinding (a foreign Host header),
 * cross-site and form-encoded state changes, security headers, the ops endpoints on the public
 * port, cluster names probed before sign-in, and the `__Host-` cookie. After every attack a
 * bystander's pod shell on the same server still echoes keystrokes.
 */
const cluster = new TestClusterClient(inject('cluster'));
const suffix = Date.now().toString(36);
const ns = `hygiene-${suffix}`;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One raw HTTP request (so Host, Origin and the body type are exactly what an attacker sends). */
function raw(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        headers: { ...headers, ...(body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {}) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A WebSocket upgrade with exactly these headers: the refusal's status and JSON, or 'accepted'. */
function upgrade(
  port: number,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> } | 'accepted'> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers });
    ws.on('open', () => {
      ws.terminate();
      resolve('accepted');
    });
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          body = { raw: text };
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    ws.on('error', () => undefined);
  });
}

describe('hostile browsers against the server', () => {
  let server: NestExpressApplication;
  let port: number;
  let origin: string;
  let cookie: string;
  let bystander: TerminalClient;

  beforeAll(async () => {
    // The admin tier's rights in this namespace (the server impersonates the operator).
    await startExecPod(cluster, ns, [{ tier: 'admin', role: 'admin', name: 'tier-admin' }]);
    const dir = writeConfigDir('hygiene', inject('cluster').adminKubeconfig, {
      groupTiers: { admins: 'admin' },
      users: [{ subject: 'alice', groups: ['admins'] }],
    });
    const web = join(dir, 'web');
    mkdirSync(web);
    writeFileSync(join(web, 'index.html'), '<!doctype html><title>Periscope</title>');
    port = await freePort();
    origin = `http://localhost:${port}`;
    ({ server } = await startTestServer(
      testServerConfig(dir, {
        PERISCOPE_WEB_DIR: web,
        PERISCOPE_PUBLIC_URL: origin,
        PERISCOPE_LOG_LEVEL: 'error',
      }),
      port,
    ));
    cookie = await devLogin(`http://127.0.0.1:${port}`, 'alice');

    // The bystander: a pod shell opened the way the SPA opens it, kept for the whole file.
    const res = await fetch(`http://127.0.0.1:${port}/api/clusters/lab/pods/${ns}/app/exec/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie, origin },
      body: JSON.stringify({ container: 'main' }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { socketPath } = (await res.json()) as { socketPath: string };
    bystander = new TerminalClient(`ws://127.0.0.1:${port}${socketPath}`, { cookie, origin });
    await bystander.opened;
    await until('the bystander prompt', () => bystander.bytes > 0, 30_000);
  }, 120_000);

  afterAll(async () => {
    bystander.control({ type: 'close' });
    await server.close();
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
  });

  /** After each attack: the server answers and the bystander's shell still echoes. */
  async function bystanderStillWorks(tag: string): Promise<void> {
    expect((await raw(port, 'GET', '/healthz', { host: `localhost:${port}` })).status).toBe(200);
    const n = Math.floor(Math.random() * 1000);
    bystander.type(`echo ${tag}-$((${n}+1))\n`);
    await bystander.waitText(`the bystander to echo after ${tag}`, new RegExp(`${tag}-${n + 1}`));
  }

  it('refuses a terminal upgrade without Origin (403), as it refuses a foreign one', async () => {
    const path = `/api/clusters/lab/pods/${ns}/app/exec`;
    const none = await upgrade(port, path, { cookie });
    expect(none).toMatchObject({ status: 403, body: { error: 'E_FORBIDDEN' } });
    expect(String((none as { body: Record<string, unknown> }).body['message'])).toMatch(/Origin/);
    expect(await upgrade(port, path, { cookie, origin: 'https://evil.example' })).toMatchObject({
      status: 403,
    });
    // the real origin still opens one
    expect(await upgrade(port, path, { cookie, origin })).toBe('accepted');
    await bystanderStillWorks('origin');
  });

  it('refuses a foreign Host on every request and upgrade (DNS rebinding) with 421', async () => {
    const rebound = { host: `rebind.evil.example:${port}`, origin: `http://rebind.evil.example:${port}` };
    const page = await raw(port, 'GET', '/', { ...rebound, accept: 'text/html' });
    expect(page.status).toBe(421);
    expect(JSON.parse(page.body)).toMatchObject({ error: 'E_MISDIRECTED' });
    expect(JSON.parse(page.body).message).toContain('PERISCOPE_PUBLIC_URL');
    // the attack that matters on a dev server: signing in through the rebound name
    const login = await raw(
      port,
      'POST',
      '/api/auth/dev-login',
      { ...rebound, 'content-type': 'application/json' },
      JSON.stringify({ subject: 'alice' }),
    );
    expect(login.status).toBe(421);
    expect(login.headers['set-cookie']).toBeUndefined();
    expect((await raw(port, 'GET', '/api/auth/config', rebound)).status).toBe(421);
    expect(
      await upgrade(port, `/api/clusters/lab/pods/${ns}/app/exec`, { ...rebound, cookie }),
    ).toMatchObject({ status: 421, body: { error: 'E_MISDIRECTED' } });
    // the names a rebinding page cannot bring: the public host, IP addresses, localhost
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`])
      expect((await raw(port, 'GET', '/api/auth/config', { host })).status, host).toBe(200);
    await bystanderStillWorks('host');
  });

  it('accepts only JSON from this origin on state-changing routes (403 E_CSRF, 415)', async () => {
    const host = `localhost:${port}`;
    const form = await raw(
      port,
      'POST',
      '/api/auth/dev-login',
      { host, origin, 'content-type': 'application/x-www-form-urlencoded' },
      'subject=alice',
    );
    expect(form.status).toBe(415);
    expect(JSON.parse(form.body)).toMatchObject({ error: 'E_UNSUPPORTED_MEDIA_TYPE' });
    expect(form.headers['set-cookie']).toBeUndefined();
    const text = await raw(
      port,
      'POST',
      `/api/clusters/lab/pods/${ns}/app/exec/sessions`,
      { host, origin, cookie, 'content-type': 'text/plain' },
      '{}',
    );
    expect(text.status).toBe(415);
    const cross = await raw(
      port,
      'POST',
      `/api/clusters/lab/pods/${ns}/app/exec/sessions`,
      { host, origin: 'https://evil.example', cookie, 'content-type': 'application/json' },
      '{}',
    );
    expect(cross.status).toBe(403);
    expect(JSON.parse(cross.body)).toMatchObject({ error: 'E_CSRF' });
    const site = await raw(port, 'POST', '/api/auth/logout', {
      host,
      cookie,
      'sec-fetch-site': 'cross-site',
    });
    expect(site.status).toBe(403);
    // the cookie survived the cross-site sign-out attempt
    expect((await raw(port, 'GET', '/api/auth/whoami', { host, cookie })).status).toBe(200);
    await bystanderStillWorks('csrf');
  });

  it('sends security headers on the SPA and the API', async () => {
    for (const path of ['/', '/clusters/lab', '/api/auth/config', '/api/nope']) {
      const res = await raw(port, 'GET', path, { host: `localhost:${port}`, accept: 'text/html' });
      const csp = String(res.headers['content-security-policy']);
      expect(csp, path).toContain("frame-ancestors 'none'");
      expect(csp, path).toContain("script-src 'self'");
      expect(csp, path).toContain("object-src 'none'");
      expect(res.headers['x-content-type-options'], path).toBe('nosniff');
      expect(res.headers['referrer-policy'], path).toBe('no-referrer');
    }
  });

  it('keeps /metrics and /readyz off the public port; they answer on the ops listener', async () => {
    for (const path of ['/metrics', '/readyz']) {
      const res = await raw(port, 'GET', path, { host: `localhost:${port}` });
      expect(res.status, path).toBe(404);
      expect(res.body, path).not.toContain('periscope_process');
    }
    expect((await raw(port, 'GET', '/healthz', { host: `localhost:${port}` })).status).toBe(200);
    const opsUrl = await server.get(OpsListener).listen(0, '127.0.0.1');
    const metrics = await fetch(`${opsUrl}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('periscope_process_resident_memory_bytes');
    expect((await fetch(`${opsUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${opsUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${opsUrl}/api/auth/config`)).status).toBe(404);
  });

  it('answers every cluster path 401 before sign-in, known cluster or not', async () => {
    const host = `localhost:${port}`;
    const probes: [string, string][] = [
      ['GET', '/api/clusters/lab/pods'],
      ['GET', '/api/clusters/nope/pods'],
      ['POST', `/api/clusters/lab/pods/${ns}/app/exec/sessions`],
      ['POST', `/api/clusters/nope/pods/${ns}/app/exec/sessions`],
      ['POST', '/api/clusters/lab/shell/sessions'],
      ['POST', '/api/clusters/nope/shell/sessions'],
      ['GET', '/api/clusters/nope'],
    ];
    const bodies = new Set<string>();
    for (const [method, path] of probes) {
      const res = await raw(
        port,
        method,
        path,
        { host, origin, 'content-type': 'application/json' },
        method === 'POST' ? '{}' : undefined,
      );
      expect(res.status, `${method} ${path}`).toBe(401);
      bodies.add(res.body);
    }
    expect(bodies.size).toBe(1);
    expect(JSON.parse([...bodies][0] ?? '{}')).toMatchObject({ error: 'E_AUTH' });
    for (const c of ['lab', 'nope']) {
      for (const path of [`/api/clusters/${c}/pods/${ns}/app/exec`, `/api/clusters/${c}/shell`])
        expect(await upgrade(port, path, { origin }), path).toMatchObject({
          status: 401,
          body: { error: 'E_AUTH' },
        });
    }
    // signed in, an unknown cluster is simply not found
    const known = await raw(port, 'GET', '/api/clusters/nope/pods', { host, cookie });
    expect(known.status).toBe(404);
    await bystanderStillWorks('enum');
  });
});

describe('the session cookie behind https', () => {
  let server: NestExpressApplication;
  let base: string;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'periscope-host-cookie-'));
    writeFileSync(join(dir, 'auth.yaml'), 'dev:\n  users:\n    - { subject: alice }\n');
    server = await createServerApp(
      loadServerConfig(
        {
          PERISCOPE_AUTH_MODE: 'dev',
          PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
          PERISCOPE_DATA_DIR: join(dir, 'data'),
          // TLS ends at a proxy in front; the server itself listens on loopback http.
          PERISCOPE_PUBLIC_URL: 'https://periscope.example.com',
          PERISCOPE_LOG_LEVEL: 'error',
        },
        (p) => readFileSync(p, 'utf8'),
      ),
    );
    await server.listen(0, '127.0.0.1');
    base = await server.getUrl();
  });

  afterAll(async () => {
    await server.close();
  });

  it('is a __Host- cookie (Secure, Path=/, no Domain), and the plain name is ignored', async () => {
    const res = await fetch(`${base}/api/auth/dev-login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://periscope.example.com' },
      body: JSON.stringify({ subject: 'alice' }),
    });
    expect(res.status).toBe(204);
    const set = res.headers.getSetCookie();
    expect(set).toHaveLength(1);
    const c = set[0] ?? '';
    expect(c).toMatch(/^__Host-periscope_session=/);
    expect(c).toMatch(/; Secure/i);
    expect(c).toMatch(/; Path=\//i);
    expect(c).not.toMatch(/Domain=/i);
    const value = c.split(';')[0]?.split('=')[1] ?? '';
    const me = (name: string): Promise<number> =>
      fetch(`${base}/api/auth/whoami`, { headers: { cookie: `${name}=${value}` } }).then((r) => r.status);
    expect(await me('__Host-periscope_session')).toBe(200);
    // a cookie without the prefix could have been set by a sibling subdomain (cookie tossing)
    expect(await me('periscope_session')).toBe(401);
  });
});
