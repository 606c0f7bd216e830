import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';

import { ExecSession, type ExecResult } from './exec-session';

/**
 * A stand-in apiserver that sends a command's output and exit status in the same tick as the
 * upgrade answer, so the client reads them in one go (as a busy process reading its socket late
 * does): none of it may be lost, and no handler may run before `open` has resolved.
 */
describe('ExecSession output that comes with the upgrade answer', () => {
  let server: Server;
  let wss: WebSocketServer;
  let kc: k8s.KubeConfig;

  beforeAll(async () => {
    server = createServer();
    wss = new WebSocketServer({ server, handleProtocols: () => 'v5.channel.k8s.io' });
    wss.on('connection', (ws) => {
      ws.send(Buffer.concat([Buffer.from([1]), Buffer.from('first\n')]));
      ws.send(Buffer.concat([Buffer.from([2]), Buffer.from('second\n')]));
      ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify({ status: 'Success' }))]));
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

  afterAll(async () => {
    wss.close();
    await new Promise((resolve) => server.close(resolve));
  });

  it('hands every frame over once open has resolved, in order', async () => {
    const seen: string[] = [];
    let opened = false;
    const exit = await new Promise<ExecResult>((resolve, reject) => {
      setTimeout(() => {
        reject(new Error(`no exit status within 5 s; seen: ${JSON.stringify(seen)}`));
      }, 5000).unref();
      ExecSession.open(
        kc,
        { namespace: 'n', pod: 'p', container: 'c', command: ['x'], tty: false, stdin: false },
        {
          onOutput: (ch, b) => {
            seen.push(`${opened ? '' : 'before open: '}${ch}:${b.toString()}`);
            return true;
          },
          onExit: (r) => {
            seen.push(`${opened ? '' : 'before open: '}exit`);
            resolve(r);
          },
        },
      ).then(() => (opened = true), reject);
    });
    expect(exit).toEqual({ exitCode: 0, status: 'Success' });
    expect(seen).toEqual(['1:first\n', '2:second\n', 'exit']);
  });
});
