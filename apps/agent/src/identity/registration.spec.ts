import 'reflect-metadata';

import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { spkiPinOfDer } from './agent-keys';
import { register, RegistrationError } from './registration';
import { selfSigned } from './test-certs';

const BODY = { token: 'tok', cluster: 'edge-1', csr: 'CSR' };
const GOOD = { certificate: 'CERT', caBundle: 'CA', tunnelUrl: 'https://127.0.0.1:8443' };

/** What the local registration server answers next, and what it was sent. */
let answer: { status: number; body: string } = { status: 200, body: JSON.stringify(GOOD) };
const received: { url: string; body: unknown }[] = [];

describe(register.name, () => {
  let server: Server;
  let base: string;
  let pin: string;

  beforeAll(async () => {
    const tls = await selfSigned();
    pin = spkiPinOfDer(tls.der);
    server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (text += c));
      req.on('end', () => {
        received.push({ url: req.url ?? '', body: JSON.parse(text) as unknown });
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(answer.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const outcome = (p: Promise<unknown>): Promise<unknown> =>
    p.then(
      (v) => ({ value: v }),
      (e: unknown) => e,
    );

  it('registers through a self-signed server it trusts by the pin of its key', async () => {
    answer = { status: 200, body: JSON.stringify(GOOD) };
    received.length = 0;
    expect(await register(base, BODY, pin)).toEqual(GOOD);
    expect(received).toEqual([{ url: '/api/agents/register', body: BODY }]);
  });

  it('does not trust a self-signed server without a pin, nor with another pin (permanent)', async () => {
    const unpinned = await outcome(register(base, BODY));
    expect(unpinned).toBeInstanceOf(RegistrationError);
    expect((unpinned as RegistrationError).message).toMatch(/self-signed|unable to verify|certificate/);
    const wrong = await outcome(register(base, BODY, `sha256:${'0'.repeat(64)}`));
    expect(wrong).toMatchObject({
      permanent: true,
      message: expect.stringContaining('matches the pin') as unknown,
    });
  });

  it('treats a refused token as permanent and other failures as worth a retry', async () => {
    answer = { status: 401, body: '{"code":"E_AUTH"}' };
    expect(await outcome(register(base, BODY, pin))).toMatchObject({
      permanent: true,
      message: expect.stringContaining('mint a new one') as unknown,
    });
    answer = { status: 503, body: '' };
    expect(await outcome(register(base, BODY, pin))).toMatchObject({
      permanent: false,
      message: 'registration failed with HTTP 503',
    });
  });

  it.each([
    ['not JSON', 'certificate'],
    ['a body without the certificate', JSON.stringify({ ...GOOD, certificate: 7 })],
    ['a body without the tunnel URL', JSON.stringify({ certificate: 'CERT', caBundle: 'CA' })],
  ])('refuses %s', async (_n, body) => {
    answer = { status: 200, body };
    expect(await outcome(register(base, BODY, pin))).toMatchObject({
      permanent: false,
      message: 'the server answered registration with an unexpected body',
    });
  });

  it('says when the server cannot be reached (worth a retry)', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    expect(await outcome(register(`https://127.0.0.1:${port}`, BODY, pin))).toMatchObject({
      permanent: false,
      message: expect.stringContaining(`cannot reach 127.0.0.1:${port}`) as unknown,
    });
  });
});
