import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadServerConfig } from '../config/server-config';
import { createServerApp } from '../server-app';

async function start(env: Record<string, string>): Promise<{ app: NestExpressApplication; base: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-shell-admission-'));
  writeFileSync(
    join(dir, 'auth.yaml'),
    'authorization:\n  mode: tier\n  groupTiers: { admins: admin, devs: read }\ndev:\n  users:\n    - { subject: root, groups: [admins] }\n    - { subject: root2, groups: [admins] }\n    - { subject: dev, groups: [devs] }\n' +
      [1, 2, 3, 4, 5, 6].map((i) => `    - { subject: u${i}, groups: [admins] }\n`).join(''),
  );
  // A kubeconfig backend is listed without contacting the cluster, which this test never does.
  writeFileSync(
    join(dir, 'clusters.yaml'),
    `clusters:\n  - { name: lab, backend: kubeconfig, kubeconfigPath: ${join(dir, 'none.yaml')} }\n`,
  );
  const app = await createServerApp(
    loadServerConfig(
      {
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
        PERISCOPE_DATA_DIR: join(dir, 'data'),
        PERISCOPE_LOG_LEVEL: 'error',
        ...env,
      },
      (p) => readFileSync(p, 'utf8'),
    ),
  );
  await app.listen(0, '127.0.0.1');
  return { app, base: await app.getUrl() };
}

async function login(base: string, subject: string): Promise<string> {
  const res = await fetch(`${base}/api/auth/dev-login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ subject }),
  });
  return (res.headers.get('set-cookie') ?? '').split(';')[0]!;
}

async function open(
  base: string,
  cluster: string,
  cookie?: string,
  body: unknown = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}/api/clusters/${cluster}/shell/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(cookie !== undefined ? { cookie } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('cluster-shell admission (POST /api/clusters/{c}/shell/sessions)', () => {
  let on: { app: NestExpressApplication; base: string };
  let off: { app: NestExpressApplication; base: string };

  beforeAll(async () => {
    on = await start({
      PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
      PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '2',
      PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_TOTAL: '3',
    });
    off = await start({});
  });

  afterAll(async () => {
    await on.app.close();
    await off.app.close();
  });

  it('answers in the documented order with the documented codes', async () => {
    // Not signed in: 401 before anything about the cluster, known or not.
    expect(await open(on.base, 'nope')).toMatchObject({ status: 401, body: { error: 'E_AUTH' } });
    expect(await open(on.base, 'nope', await login(on.base, 'root'))).toMatchObject({
      status: 404,
      body: { error: 'E_NOT_FOUND' },
    });
    expect(await open(off.base, 'lab', await login(off.base, 'root'))).toMatchObject({
      status: 403,
      body: { error: 'E_CLUSTER_SHELL_DISABLED' },
    });
    expect(await open(on.base, 'lab')).toMatchObject({ status: 401, body: { error: 'E_AUTH' } });
    const dev = await open(on.base, 'lab', await login(on.base, 'dev'));
    expect(dev).toMatchObject({ status: 403, body: { error: 'E_FORBIDDEN' } });
    expect(String(dev.body['message'])).toContain('allowed: admin');
    const root = await login(on.base, 'root');
    // a mode that exists but is not this tier's (bash here): refused by policy, audited
    expect(await open(on.base, 'lab', root, { mode: 'kubectl' })).toMatchObject({
      status: 403,
      body: { error: 'E_FORBIDDEN' },
    });
    // no such mode: bad input
    expect(await open(on.base, 'lab', root, { mode: 'zsh' })).toMatchObject({
      status: 400,
      body: { error: 'E_BAD_REQUEST' },
    });
  });

  it('reserves cap slots per subject and per cluster, and says which sessions are open', async () => {
    const root = await login(on.base, 'root');
    const root2 = await login(on.base, 'root2');
    const a = await open(on.base, 'lab', root);
    expect(a.status).toBe(201);
    expect(a.body).toMatchObject({
      socketPath: expect.stringContaining('/api/clusters/lab/shell?ticket=') as unknown,
    });
    expect((await open(on.base, 'lab', root)).status).toBe(201);
    const third = await open(on.base, 'lab', root);
    expect(third).toMatchObject({ status: 429, body: { error: 'E_CAP_USER', limit: 2 } });
    expect((third.body['activeSessions'] as { cluster: string }[]).map((s) => s.cluster)).toEqual([
      'lab',
      'lab',
    ]);
    expect((await open(on.base, 'lab', root2)).status).toBe(201);
    expect(await open(on.base, 'lab', root2)).toMatchObject({
      status: 429,
      body: { error: 'E_CAP_CLUSTER', limit: 3, activeSessions: 3 },
    });
  });

  it('audits every refused open (cluster_shell_denied) with its code, tier and subject; not 400s or 401s', async () => {
    const one = await start({
      PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
      PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '1',
    });
    try {
      const root = await login(one.base, 'root');
      const dev = await login(one.base, 'dev');
      expect((await open(one.base, 'lab', root)).status).toBe(201);
      expect((await open(one.base, 'lab', root)).status).toBe(429);
      expect((await open(one.base, 'lab', dev)).status).toBe(403);
      expect((await open(one.base, 'nope', root)).status).toBe(404);
      expect((await open(one.base, 'lab', root, { mode: 'zsh' })).status).toBe(400);
      expect((await open(one.base, 'lab', root, { mode: 7 })).status).toBe(400); // the ValidationPipe
      expect((await open(one.base, 'lab')).status).toBe(401);
      const audit = async (base: string, cookie: string): Promise<Record<string, unknown>[]> => {
        const res = await fetch(`${base}/api/audit?verb=cluster_shell_denied`, { headers: { cookie } });
        return ((await res.json()) as { events: Record<string, unknown>[] }).events;
      };
      const events = await audit(one.base, root);
      expect(events).toMatchObject([
        {
          actor: 'root',
          cluster: 'nope',
          sessionId: '',
          outcome: 'error',
          body: { code: 'E_NOT_FOUND', tier: 'admin', actor: 'root', cluster: 'nope' },
        },
        { actor: 'dev', cluster: 'lab', body: { code: 'E_FORBIDDEN', tier: 'read' } },
        { actor: 'root', cluster: 'lab', body: { code: 'E_CAP_USER', tier: 'admin', limit: 1 } },
      ]);
      expect(String((events[1]!['body'] as Record<string, unknown>)['reason'])).toContain('allowed: admin');
      expect(JSON.stringify(events)).not.toMatch(/ticket|cookie|periscope_session/i);
      // A server with the shell off records that refusal too.
      const offRoot = await login(off.base, 'root');
      expect((await open(off.base, 'lab', offRoot)).status).toBe(403);
      expect((await audit(off.base, offRoot))[0]).toMatchObject({
        actor: 'root',
        body: { code: 'E_CLUSTER_SHELL_DISABLED', cluster: 'lab' },
      });
    } finally {
      await one.app.close();
    }
  });

  it('admits exactly the caps under 30 concurrent opens (2 per user, 10 per cluster)', async () => {
    const capped = await start({
      PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
      PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '2',
      PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_TOTAL: '10',
    });
    try {
      const users = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
      const cookies = await Promise.all(users.map((u) => login(capped.base, u)));
      const answers = await Promise.all(
        Array.from({ length: 30 }, (_, i) => open(capped.base, 'lab', cookies[i % users.length])),
      );
      const admitted = answers.filter((a) => a.status === 201);
      expect(admitted).toHaveLength(10);
      expect(answers.filter((a) => a.status === 429)).toHaveLength(20);
      // no user above 2: count admitted per user from the cookie index
      const perUser = users.map(
        (_, u) => answers.filter((a, i) => i % users.length === u && a.status === 201).length,
      );
      expect(Math.max(...perUser)).toBeLessThanOrEqual(2);
      expect(perUser.reduce((x, y) => x + y, 0)).toBe(10);
    } finally {
      await capped.app.close();
    }
  });
});
