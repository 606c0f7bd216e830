import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { createDevTierApp, type DevTierApp } from '../testing/dev-tier-app';

/** Refused pod-exec opens land in the audit store as `exec_denied`; malformed requests do not. */
describe('refused pod-exec opens (exec_denied)', () => {
  let app: NestExpressApplication;
  let as: DevTierApp['as'];

  beforeAll(async () => {
    // Audit lines go to stdout: keep the test output readable.
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    // Kubeconfig backends are listed without contacting a cluster; no open here reaches one.
    const server = await createDevTierApp({
      prefix: 'periscope-exec-denied-',
      clusters: [
        '{ name: lab, backend: kubeconfig, kubeconfigPath: {none}, protectedNamespaces: [vault], exec: { maxSessionsPerUser: 1 } }',
        '{ name: sealed, backend: kubeconfig, kubeconfigPath: {none}, exec: { enabled: false } }',
      ],
    });
    app = server.app;
    as = server.as;
  });

  afterAll(async () => {
    await app.close();
    vi.restoreAllMocks();
  });

  it('records code, cluster, tier, subject and namespace/pod/container, never the command', async () => {
    const root = await as('root');
    const dev = await as('dev');
    const body = { container: 'app', command: ['sh', '-c', 'PGPASSWORD=hunter2 psql'] };
    await root.post('/api/clusters/lab/pods/web/api-0/exec/sessions').send(body).expect(201);
    await root.post('/api/clusters/lab/pods/web/api-1/exec/sessions').send(body).expect(429);
    await dev.post('/api/clusters/sealed/pods/web/api-0/exec/sessions').send(body).expect(403);
    await dev.post('/api/clusters/lab/pods/vault/vault-0/exec/sessions').send(body).expect(403);
    await dev.post('/api/clusters/gone/pods/web/api-0/exec/sessions').send(body).expect(404);
    // Input errors are not refusals: bad names (admission) and a bad body (the ValidationPipe).
    await dev.post('/api/clusters/lab/pods/Bad_NS/api-0/exec/sessions').send(body).expect(400);
    await dev.post('/api/clusters/lab/pods/web/api-0/exec/sessions').send({ tty: 'yes' }).expect(400);
    await request(app.getHttpServer())
      .post('/api/clusters/lab/pods/web/api-0/exec/sessions')
      .send(body)
      .expect(401);

    const res = await root.get('/api/audit?verb=exec_denied').expect(200);
    const events = (res.body as { events: Record<string, unknown>[] }).events;
    expect(events).toMatchObject([
      {
        actor: 'dev',
        cluster: 'gone',
        outcome: 'error',
        body: { code: 'E_NOT_FOUND', namespace: 'web', pod: 'api-0' },
      },
      {
        actor: 'dev',
        cluster: 'lab',
        body: {
          code: 'E_PROTECTED_NAMESPACE',
          tier: 'read',
          namespace: 'vault',
          pod: 'vault-0',
          container: 'app',
        },
      },
      { actor: 'dev', cluster: 'sealed', body: { code: 'E_EXEC_DISABLED', tier: 'read', pod: 'api-0' } },
      { actor: 'root', cluster: 'lab', body: { code: 'E_CAP_USER', tier: 'admin', limit: 1, pod: 'api-1' } },
    ]);
    expect(JSON.stringify(events)).not.toMatch(/hunter2|PGPASSWORD|command|ticket/);
  });
});
