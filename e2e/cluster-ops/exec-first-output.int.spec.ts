import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { connect, type ConnectionOptions } from 'node:tls';

import * as k8s from '@kubernetes/client-node';
import { DirectGateway, ExecSession, type ExecResult } from '@periscope/cluster-ops';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { TestClusterClient } from '../k8s/cluster';
import { startExecPod } from '../support/test-server';

const cluster = new TestClusterClient(inject('cluster'));
const ns = `exec-first-${Date.now().toString(36)}`;
const LINE = 'periscope-first-output-0123456789abcdefghijklmnopqrstuvwxyz';
const BYTES = 300_000;

/**
 * A loopback proxy in front of the apiserver (plain HTTP to the client, TLS with the admin
 * identity to the apiserver) that hands what the apiserver sends to the client in batches
 * (everything that came within `everyMs`, in one write): the client then reads the 101
 * Switching Protocols and the command's first output frames (even its exit status) in one
 * read, as a busy process does that reads its socket late. Held bytes are bounded: above
 * 1 MiB they are written at once.
 */
class BatchingProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly target: ConnectionOptions,
    private readonly everyMs = 300,
  ) {}

  get port(): number {
    const a = this.server?.address();
    if (!a || typeof a === 'string') throw new Error('the proxy is not listening');
    return a.port;
  }

  async start(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target);
      this.sockets.add(client).add(upstream);
      const held: Buffer[] = [];
      let heldBytes = 0;
      let timer: NodeJS.Timeout | undefined;
      const flush = (): void => {
        timer = undefined;
        if (held.length > 0 && !client.destroyed) client.write(Buffer.concat(held.splice(0)));
        heldBytes = 0;
      };
      upstream.on('data', (b: Buffer) => {
        held.push(b);
        heldBytes += b.length;
        if (heldBytes > 1024 * 1024) flush();
        else timer ??= setTimeout(flush, this.everyMs);
      });
      client.on('data', (b: Buffer) => upstream.write(b));
      const end = (): void => {
        if (timer) clearTimeout(timer);
        flush();
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      upstream.on('close', end).on('error', end);
      client.on('close', end).on('error', end);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => {
      if (this.server)
        this.server.close(() => {
          resolve();
        });
      else resolve();
    });
  }
}

function expectedSha(bytes: number): string {
  const unit = `${LINE}\n`;
  return createHash('sha256')
    .update(unit.repeat(Math.ceil(bytes / unit.length)).slice(0, bytes))
    .digest('hex');
}

interface Received {
  bytes: number;
  sha256: string;
  exit: ExecResult;
}

/**
 * A command's output must arrive whole however the client reads its socket: bytes that came in
 * the same read as the upgrade answer were dropped (the output listener was attached only once
 * the open had resolved), so a stream lost its start, or a short command its exit status.
 */
describe('exec output that arrives with the upgrade answer', () => {
  let proxy: BatchingProxy;
  let kc: k8s.KubeConfig;

  beforeAll(async () => {
    await startExecPod(cluster, ns, []);
    const admin = new k8s.KubeConfig();
    admin.loadFromFile(cluster.info.adminKubeconfig);
    const current = admin.getCurrentCluster()!;
    const server = new URL(current.server);
    const tls: Record<string, unknown> & { headers: Record<string, string> } = { headers: {} };
    await admin.applyToHTTPSOptions(tls);
    proxy = new BatchingProxy({
      host: server.hostname,
      port: Number(server.port),
      servername: server.hostname === '127.0.0.1' ? undefined : server.hostname,
      ca: tls['ca'] as Buffer | undefined,
      cert: tls['cert'] as Buffer | undefined,
      key: tls['key'] as Buffer | undefined,
    });
    await proxy.start();
    kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'proxy', server: `http://127.0.0.1:${proxy.port}`, skipTLSVerify: true }],
      users: admin.users,
      contexts: [{ name: 'proxy', cluster: 'proxy', user: admin.getCurrentUser()!.name }],
      currentContext: 'proxy',
    });
  });

  afterAll(async () => {
    await proxy.stop();
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']);
  });

  const command = ['sh', '-c', `yes '${LINE}' | head -c ${BYTES}`];

  /** Runs `command`, returns what came back; fails after 20 s with what came so far. */
  function run(
    open: (onOutput: (b: Uint8Array) => void, onExit: (r: ExecResult) => void) => Promise<unknown>,
  ) {
    return new Promise<Received>((resolve, reject) => {
      const hash = createHash('sha256');
      let bytes = 0;
      const timer = setTimeout(() => {
        reject(new Error(`no exit within 20 s; ${bytes} of ${BYTES} bytes came`));
      }, 20_000);
      open(
        (b) => {
          bytes += b.length;
          hash.update(b);
        },
        (exit) => {
          clearTimeout(timer);
          resolve({ bytes, sha256: hash.digest('hex'), exit });
        },
      ).catch((err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  it('an exec session gets every byte and the exit status', async () => {
    for (let i = 0; i < 3; i++) {
      const got = await run((onOutput, onExit) =>
        ExecSession.open(
          kc,
          { namespace: ns, pod: 'app', container: 'main', command, tty: false, stdin: false },
          {
            onOutput: (_ch, b) => {
              onOutput(b);
              return true;
            },
            onExit,
          },
        ),
      );
      expect(got).toEqual({
        bytes: BYTES,
        sha256: expectedSha(BYTES),
        exit: { exitCode: 0, status: 'Success' },
      });
    }
  });

  it('a gateway exec (the server and the agent open pod execs this way) gets every byte', async () => {
    const gateway = new DirectGateway(kc, { preferClusterInfo: false });
    for (let i = 0; i < 3; i++) {
      const got = await run((onOutput, onExit) =>
        gateway.openExec(
          { namespace: ns, pod: 'app', container: 'main', command, tty: false, stdin: false },
          {
            onOutput: (_ch, b) => {
              onOutput(b);
              return true;
            },
            onExit,
            onError: () => undefined,
          },
        ),
      );
      expect(got).toEqual({
        bytes: BYTES,
        sha256: expectedSha(BYTES),
        exit: { exitCode: 0, status: 'Success' },
      });
    }
  });
});
