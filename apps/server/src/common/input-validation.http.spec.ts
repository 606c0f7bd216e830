import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createDevTierApp, type DevTierApp } from '../testing/dev-tier-app';

/** The global ValidationPipe: every controller body and query is checked by its DTO class. */
describe('HTTP input validation (400 E_BAD_REQUEST naming the field)', () => {
  let app: NestExpressApplication;
  let as: DevTierApp['as'];

  beforeAll(async () => {
    const server = await createDevTierApp({ prefix: 'periscope-input-http-' });
    app = server.app;
    as = server.as;
  });

  afterAll(async () => {
    await app.close();
  });

  async function refused(res: request.Response): Promise<string> {
    expect(res.status).toBe(400);
    const body = res.body as { error: string; message: string };
    expect(body.error).toBe('E_BAD_REQUEST');
    return Promise.resolve(body.message);
  }

  it.each([
    ['cluster shell', '/api/clusters/lab/shell/sessions', { mode: 'bash', image: 'evil' }, 'image', 'mode'],
    [
      'pod exec',
      '/api/clusters/lab/pods/default/web-0/exec/sessions',
      { container: 'app', privileged: true },
      'privileged',
      'container, tty, command',
    ],
    ['dev login', '/api/auth/dev-login', { subject: 'root', tier: 'admin' }, 'tier', 'subject'],
  ])(
    '%s: refuses a body with an unknown field, naming it and the allowed ones',
    async (_n, path, body, field, allowed) => {
      const dev = await as('dev');
      const message = await refused(await dev.post(path).send(body));
      expect(message).toBe(`unknown field "${field}"; allowed: ${allowed}`);
    },
  );

  it.each([
    ['cluster shell', '/api/clusters/lab/shell/sessions', { mode: 5 }, /^mode must be a string$/],
    [
      'pod exec',
      '/api/clusters/lab/pods/default/web-0/exec/sessions',
      { tty: 'yes' },
      /^tty must be true or false$/,
    ],
    [
      'pod exec',
      '/api/clusters/lab/pods/default/web-0/exec/sessions',
      { command: 'ls' },
      /^command must be a list of 1 to 64 strings/,
    ],
    [
      'pod exec',
      '/api/clusters/lab/pods/default/web-0/exec/sessions',
      { container: null },
      /^container must be a string/,
    ],
    ['dev login', '/api/auth/dev-login', { subject: ['root'] }, /^subject must be a string$/],
    ['dev login', '/api/auth/dev-login', {}, /^subject must be a string$/],
  ])('%s: refuses a wrong-typed field %j', async (_n, path, body, message) => {
    const dev = await as('dev');
    expect(await refused(await dev.post(path).send(body))).toMatch(message);
  });

  it('refuses a body that is not an object', async () => {
    const dev = await as('dev');
    const res = await dev
      .post('/api/clusters/lab/shell/sessions')
      .set('content-type', 'application/json')
      .send('[1]');
    expect(await refused(res)).toBe('the request body must be a JSON object');
  });

  it('names every bad field of one body', async () => {
    const dev = await as('dev');
    const message = await refused(
      await dev.post('/api/clusters/lab/pods/default/web-0/exec/sessions').send({ tty: 1, container: 7 }),
    );
    expect(message).toContain('container must be a string');
    expect(message).toContain('tty must be true or false');
  });

  it('checks an admin body after the guards: 401 and 403 first, then the DTO', async () => {
    const anon = await request(app.getHttpServer()).post('/api/agents/tokens').send({ cluster: 5 });
    expect(anon.status).toBe(401);
    const dev = await as('dev');
    expect((await dev.post('/api/agents/tokens').send({ cluster: 5 })).status).toBe(403);
    const root = await as('root');
    expect(await refused(await root.post('/api/agents/tokens').send({ cluster: 5 }))).toMatch(
      /^cluster must be a string/,
    );
    expect(await refused(await root.post('/api/agents/tokens').send({ cluster: 'a', ttl: 60 }))).toBe(
      'unknown field "ttl"; allowed: cluster',
    );
  });

  it('refuses unknown and malformed query parameters (pods, audit, login)', async () => {
    const dev = await as('dev');
    expect(await refused(await dev.get('/api/clusters/lab/pods?namespace=Not_A_Name'))).toBe(
      'namespace must be a Kubernetes namespace name',
    );
    expect(await refused(await dev.get('/api/clusters/lab/pods?ns=default'))).toBe(
      'unknown query parameter "ns"; allowed: namespace',
    );
    expect(await refused(await dev.get('/api/audit?limit=0&verb=a&verb=b'))).toBe(
      'verb may be given once, as a plain value; limit must be an integer from 1 to 500; got "0"',
    );
    expect(await refused(await dev.get('/api/auth/login?returnTo=/a&returnTo=/b'))).toMatch(/^returnTo/);
  });

  it('lets a well-formed body through to the handler', async () => {
    // The DTO passes; the cluster does not exist, which only the handler can say.
    const dev = await as('dev');
    const res = await dev
      .post('/api/clusters/lab/pods/default/web-0/exec/sessions')
      .send({ container: '', tty: true, command: ['sh'] });
    expect(res.status).toBe(404);
  });
});
