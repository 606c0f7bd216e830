import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import * as k8s from '@kubernetes/client-node';
import { newRid } from '@periscope/protocol';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';

import { kubeCallOptions } from './abort';
import { AUDIT_ID_HEADER, auditIdHeader } from './audit-id';
import { ExecSession } from './exec/exec-session';
import { kubeJson, kubeWatch } from './kube-http';

describe(auditIdHeader.name, () => {
  it('is the Audit-ID header for a request id, nothing without one', () => {
    const rid = newRid();
    expect(auditIdHeader(rid)).toEqual({ 'Audit-ID': rid });
    expect(auditIdHeader(undefined)).toEqual({});
  });

  it.each([
    ['a line break (header injection)', 'rid-0001\r\nImpersonate-User: admin'],
    ['a space', 'rid 00000001'],
    ['too short', 'rid-1'],
    ['too long', 'r'.repeat(65)],
    ['empty', ''],
  ])('refuses an id with %s, naming what a request id is', (_what, id) => {
    expect(() => auditIdHeader(id)).toThrow(/8 to 64 letters, digits or dashes/);
  });
});

/**
 * Every way this library calls the apiserver sends the operation's request id: a stand-in
 * apiserver (plain HTTP and WebSocket) records the headers of each request.
 */
describe('the request id reaches the apiserver on every kind of call', () => {
  let server: Server;
  let wss: WebSocketServer;
  let kc: k8s.KubeConfig;
  const seen: { url: string; headers: IncomingHttpHeaders }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      if ((req.url ?? '').includes('watch=1')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'p' } } })}\n`);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: 'v1', kind: 'SecretList', metadata: {}, items: [] }));
    });
    wss = new WebSocketServer({ server, handleProtocols: () => 'v5.channel.k8s.io' });
    wss.on('connection', (ws, req) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      // the exit status, once the client has the socket open
      setTimeout(() => {
        ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify({ status: 'Success' }))]));
      }, 50);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: 'c',
          server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          skipTLSVerify: true,
        },
      ],
      users: [{ name: 'u', token: 'not-a-real-token' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
  });

  beforeEach(() => {
    seen.length = 0;
  });

  afterAll(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const auditIds = (): (string | string[] | undefined)[] => seen.map((s) => s.headers['audit-id']);

  it('a @kubernetes/client-node call given kubeCallOptions({ requestId })', async () => {
    const rid = newRid();
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await core.listNamespacedSecret({ namespace: 'shells' }, kubeCallOptions({ requestId: rid }));
    // with a signal too: both apply
    await core.listNamespacedSecret(
      { namespace: 'shells' },
      kubeCallOptions({ requestId: rid, signal: new AbortController().signal }),
    );
    // the kubeconfig's own credentials still go along
    expect(seen.map((s) => s.headers.authorization)).toEqual([
      'Bearer not-a-real-token',
      'Bearer not-a-real-token',
    ]);
    expect(auditIds()).toEqual([rid, rid]);
    // and without a request id none is sent (the apiserver makes its own)
    await core.listNamespacedSecret({ namespace: 'shells' }, kubeCallOptions({}));
    expect(auditIds()[2]).toBeUndefined();
  });

  it('kubeJson and kubeWatch', async () => {
    const rid = newRid();
    await kubeJson(kc, {
      method: 'GET',
      path: '/api/v1/nodes',
      timeoutMs: 5000,
      what: 'listing nodes',
      requestId: rid,
    });
    let opened = 0;
    const events: string[] = [];
    await kubeWatch(kc, '/api/v1/namespaces/s/pods?watch=1&timeoutSeconds=5', (e) => events.push(e.type), {
      deadlineMs: 5000,
      signal: new AbortController().signal,
      what: 'watching pods',
      requestId: rid,
      onOpen: () => opened++,
    });
    expect(auditIds()).toEqual([rid, rid]);
    expect(opened).toBe(1);
    expect(events).toEqual(['ADDED']);
  });

  it('an exec (the WebSocket upgrade request)', async () => {
    const rid = newRid();
    const exit = await new Promise((resolve, reject) => {
      setTimeout(() => {
        reject(new Error('no exit status within 5 s'));
      }, 5000).unref();
      ExecSession.open(
        kc,
        {
          namespace: 's',
          pod: 'p',
          container: 'c',
          command: ['true'],
          tty: false,
          stdin: false,
          auditId: rid,
        },
        { onOutput: () => true, onExit: resolve },
      ).catch(reject);
    });
    expect(exit).toMatchObject({ status: 'Success' });
    expect(auditIds()).toEqual([rid]);
  });

  it('an id that is not a request id is refused before anything is sent', async () => {
    const bad = 'rid-0001\r\nImpersonate-User: admin';
    expect(() => kubeCallOptions({ requestId: bad })).toThrow(/Audit-ID/);
    await expect(
      kubeJson(kc, {
        method: 'GET',
        path: '/api/v1/nodes',
        timeoutMs: 5000,
        what: 'listing nodes',
        requestId: bad,
      }),
    ).rejects.toThrow(/8 to 64 letters/);
    await expect(
      kubeWatch(kc, '/api/v1/pods?watch=1', () => undefined, {
        deadlineMs: 5000,
        signal: new AbortController().signal,
        what: 'watching pods',
        requestId: bad,
      }),
    ).rejects.toThrow(/8 to 64 letters/);
    await expect(
      ExecSession.open(
        kc,
        {
          namespace: 's',
          pod: 'p',
          container: 'c',
          command: ['true'],
          tty: false,
          stdin: false,
          auditId: bad,
        },
        { onOutput: () => true, onExit: () => undefined },
      ),
    ).rejects.toThrow(/8 to 64 letters/);
    expect(seen).toEqual([]);
    expect(AUDIT_ID_HEADER).toBe('Audit-ID');
  });
});
