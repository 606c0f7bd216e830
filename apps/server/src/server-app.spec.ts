import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { OpsListener } from '@periscope/observability';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadServerConfig } from './config/server-config';
import { createServerApp } from './server-app';

describe('server HTTP surface', () => {
  let app: NestExpressApplication;
  let base: string;
  let ops: string;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'periscope-server-'));
    writeFileSync(join(dir, 'auth.yaml'), 'dev:\n  users:\n    - subject: alice\n');
    const web = join(dir, 'web');
    mkdirSync(web);
    writeFileSync(join(web, 'index.html'), '<!doctype html><title>Periscope</title>');
    const config = loadServerConfig(
      {
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_WEB_DIR: web,
        PERISCOPE_DATA_DIR: join(dir, 'data'),
        PERISCOPE_LOG_LEVEL: 'warn',
      },
      (p) => readFileSync(p, 'utf8'),
    );
    app = await createServerApp(config);
    await app.listen(0, '127.0.0.1');
    base = await app.getUrl();
    ops = await app.get(OpsListener).listen(0, '127.0.0.1');
  });

  afterAll(async () => {
    await app.close();
  });

  it('answers /healthz', async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('answers /readyz with its checks on the ops listener only', async () => {
    const res = await fetch(`${ops}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
    expect((await fetch(`${base}/readyz`)).status).toBe(404);
  });

  it('exposes Prometheus metrics on the ops listener only', async () => {
    const res = await fetch(`${ops}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(await res.text()).toContain('periscope_process_resident_memory_bytes');
    const pub = await fetch(`${base}/metrics`);
    expect(pub.status).toBe(404);
    expect(await pub.text()).not.toContain('periscope_process');
  });

  it('serves the API under /api and the SPA at /', async () => {
    const meta = await fetch(`${base}/api/meta`);
    const body = (await meta.json()) as { publicUrl: string; allowedOrigins: string[] };
    expect(body).toMatchObject({ authMode: 'dev', clusterShellEnabled: false });
    expect(body.allowedOrigins).toContain(body.publicUrl);
    const page = await fetch(`${base}/clusters/prod`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>Periscope</title>');
    const missing = await fetch(`${base}/api/nope`, { headers: { accept: 'text/html' } });
    expect(missing.status).toBe(404);
  });

  it('keeps Socket.IO off the public port (the agent gateway has its own mTLS listener)', async () => {
    const res = await fetch(`${base}/socket.io/?EIO=4&transport=polling`);
    // An engine.io handshake would answer `0{"sid":…}`.
    expect(await res.text()).not.toMatch(/"sid"/);
  });
});
