import 'reflect-metadata';

import { createHash, webcrypto } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';

import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import * as x509 from '@peculiar/x509';
import { Backoff, CHANNEL, RESET_CODE, type MuxStream, type StreamOpen } from '@periscope/protocol';
import pino from 'pino';

import { TunnelClient } from '../../apps/agent/src/tunnel/tunnel-client';
import { AgentCa, type AgentCaStore, type CaMaterial } from '../../apps/server/src/agents/agent-ca';
import type { AgentLink } from '../../apps/server/src/tunnel/agent-link';
import { AgentLinks } from '../../apps/server/src/tunnel/agent-links';
import { TunnelAdmission, type AdmissionRefusal } from '../../apps/server/src/tunnel/tunnel-admission';
import { TunnelIoAdapter } from '../../apps/server/src/tunnel/tunnel-io.adapter';
import { TunnelListener } from '../../apps/server/src/tunnel/tunnel-listener';
import { TunnelGateway } from '../../apps/server/src/tunnel/tunnel.gateway';

export const log = pino({ level: process.env['TUNNEL_TEST_LOG'] ?? 'silent' });

class MemoryStore implements AgentCaStore {
  m: CaMaterial | undefined;
  load(): Promise<CaMaterial | undefined> {
    return Promise.resolve(this.m);
  }
  saveIfAbsent(m: CaMaterial): Promise<CaMaterial> {
    this.m ??= m;
    return Promise.resolve(this.m);
  }
}

export async function newCa(): Promise<AgentCa> {
  return AgentCa.loadOrCreate(new MemoryStore());
}

/** Key + certificate for an agent of `cluster`, signed by `ca` (as registration would). */
export async function agentIdentity(
  ca: AgentCa,
  cluster: string,
): Promise<{ certPem: string; keyPem: string; caPem: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cluster}`,
    keys,
    signingAlgorithm: alg,
  });
  const certPem = await ca.signAgentCsr(csr.toString('pem'), cluster);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${(pkcs8.match(/.{1,64}/g) ?? []).join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { certPem, keyPem, caPem: ca.certPem };
}

/**
 * A test stand-in for the agent's exec: `echo` returns stdin on stdout; `zeros <bytes>` writes
 * that many constant bytes cheaply; `flood <bytes>` writes that many pseudo-random bytes and reports their SHA-256 in the exit message; `sink` reads stdin
 * to EOF and exits with its SHA-256 as the message. Resize events are written back as text.
 */
export function testExec(stream: MuxStream, open: StreamOpen): void {
  stream.openOk({ protocol: 'test' });
  const cmd = open.command[0];
  if (cmd === 'echo') {
    stream.handlers = {
      onData: (ch, b) => {
        stream.write(CHANNEL.stdout, b);
        stream.consumed(ch, b.length);
      },
      onResize: (c, r) => stream.write(CHANNEL.stdout, new TextEncoder().encode(`[size ${c}x${r}]`)),
      onHalfClose: () => {
        stream.exit({ exitCode: 0, status: 'Success' });
      },
    };
  } else if (cmd === 'flood') {
    const total = Number(open.command[1]);
    const hash = createHash('sha256');
    let seed = 7;
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(64 * 1024, total - sent);
        const chunk = Buffer.allocUnsafe(n);
        for (let i = 0; i < n; i++) {
          seed = (seed * 1103515245 + 12345) & 0x7fffffff;
          chunk[i] = seed & 0xff;
        }
        hash.update(chunk);
        sent += n;
        if (!stream.write(CHANNEL.stdout, chunk)) {
          stream.handlers.onWritable = pump;
          return;
        }
      }
      stream.exit({ exitCode: 0, status: 'Success', message: hash.digest('hex') });
    };
    stream.handlers = {
      onData: (ch, b) => {
        stream.consumed(ch, b.length);
      },
    };
    pump();
  } else if (cmd === 'zeros') {
    // Bulk without per-byte work on the producer, for throughput measurements.
    const total = Number(open.command[1]);
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!stream.write(CHANNEL.stdout, n === chunk.length ? chunk : chunk.subarray(0, n))) {
          stream.handlers.onWritable = pump;
          return;
        }
      }
      stream.exit({ exitCode: 0, status: 'Success' });
    };
    stream.handlers = {
      onData: (ch, b) => {
        stream.consumed(ch, b.length);
      },
    };
    pump();
  } else if (cmd === 'sink') {
    const hash = createHash('sha256');
    stream.handlers = {
      onData: (ch, b) => {
        hash.update(b);
        stream.consumed(ch, b.length);
      },
      onHalfClose: () => {
        stream.exit({ exitCode: 0, status: 'Success', message: hash.digest('hex') });
      },
    };
  } else {
    stream.reset(RESET_CODE.openFailed, `unknown test command ${String(cmd)}`);
  }
}

/** A TCP proxy on loopback that can cut every connection and refuse new ones for a while. */
export class CuttableProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  blocked = false;
  port = 0;

  constructor(private readonly target: number) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      if (this.blocked) {
        client.destroy();
        return;
      }
      const upstream = connect(this.target, '127.0.0.1');
      this.sockets.add(client);
      this.sockets.add(upstream);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    const a = this.server.address();
    this.port = typeof a === 'object' && a ? a.port : 0;
  }

  cut(): void {
    this.blocked = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  heal(): void {
    this.blocked = false;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) =>
      this.server?.close(() => {
        resolve();
      }),
    );
  }
}

/** The server's side of the tunnel as the server runs it: listener, gateway (Nest) and links. */
export class TunnelUnderTest {
  constructor(
    readonly listener: TunnelListener,
    readonly links: AgentLinks,
    private readonly app: INestApplication,
  ) {}

  link(cluster: string): AgentLink | undefined {
    return this.links.link(cluster);
  }

  get address(): { host: string; port: number } {
    return this.listener.address;
  }

  get refusals(): Map<AdmissionRefusal, number> {
    return this.listener.refusals;
  }

  async stop(): Promise<void> {
    this.links.closeAll('server shutting down');
    await this.listener.close();
    await this.app.close();
  }
}

/** Starts the tunnel listener with the Nest gateway on it, as TunnelModule wires it. */
export async function startTunnel(opts: {
  ca: AgentCa;
  clusters: Set<string>;
  graceMs: number;
  admissions: { perSecond: number; burst: number };
  limits?: { linkCap?: number; window?: number };
}): Promise<TunnelUnderTest> {
  const tls = await opts.ca.issueServerCert(['127.0.0.1', 'localhost']);
  const listener = new TunnelListener({
    host: '127.0.0.1',
    port: 0,
    admission: new TunnelAdmission({
      isAgentCluster: (c) => opts.clusters.has(c),
      admissionsPerSecond: opts.admissions.perSecond,
      admissionBurst: opts.admissions.burst,
    }),
    log,
  });
  const links = new AgentLinks({
    graceMs: opts.graceMs,
    maxPendingRequests: 1000,
    log,
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
  const moduleRef = await Test.createTestingModule({
    providers: [TunnelGateway, { provide: AgentLinks, useValue: links }],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  app.useWebSocketAdapter(new TunnelIoAdapter(listener));
  await app.init();
  await listener.listen({ caPem: opts.ca.certPem, certPem: tls.certPem, keyPem: tls.keyPem });
  return new TunnelUnderTest(listener, links, app);
}

export interface Harness {
  ca: AgentCa;
  server: TunnelUnderTest;
  proxy: CuttableProxy;
  agent: (
    cluster: string,
    opts?: {
      graceMs?: number;
      identity?: { certPem: string; keyPem: string; caPem: string };
      onOpen?: (stream: MuxStream, open: StreamOpen) => void;
    },
  ) => Promise<TunnelClient>;
  stop: () => Promise<void>;
}

export async function startHarness(
  opts: {
    graceMs?: number;
    clusters?: string[];
    linkCap?: number;
    window?: number;
    admissions?: { perSecond: number; burst: number };
  } = {},
): Promise<Harness> {
  const ca = await newCa();
  const server = await startTunnel({
    ca,
    clusters: new Set(opts.clusters ?? ['edge-1', 'edge-2']),
    graceMs: opts.graceMs ?? 120_000,
    admissions: opts.admissions ?? { perSecond: 50, burst: 50 },
    ...(opts.linkCap !== undefined || opts.window !== undefined
      ? {
          limits: {
            ...(opts.linkCap !== undefined ? { linkCap: opts.linkCap } : {}),
            ...(opts.window !== undefined ? { window: opts.window } : {}),
          },
        }
      : {}),
  });
  const proxy = new CuttableProxy(server.address.port);
  await proxy.start();
  const agents: TunnelClient[] = [];
  return {
    ca,
    server,
    proxy,
    agent: async (cluster, o = {}) => {
      const identity = o.identity ?? (await agentIdentity(ca, cluster));
      const client = new TunnelClient({
        serverUrl: `https://127.0.0.1:${proxy.port}`,
        cluster,
        identity: () => identity,
        graceMs: o.graceMs ?? opts.graceMs ?? 120_000,
        giveUpAfterMs: 600_000,
        onGiveUp: () => undefined,
        onOpen: o.onOpen ?? testExec,
        hello: () => ({
          cluster,
          version: 'test',
          clusterShell: { enabled: true, tiers: ['admin'], namespace: 'periscope-system' },
          certNotAfter: new Date().toISOString(),
        }),
        log,
        ...(opts.linkCap !== undefined || opts.window !== undefined
          ? {
              limits: {
                ...(opts.linkCap !== undefined ? { linkCap: opts.linkCap } : {}),
                ...(opts.window !== undefined ? { window: opts.window } : {}),
              },
            }
          : {}),
        backoff: new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.5, healthyMs: 5000 }),
      });
      agents.push(client);
      client.start();
      return client;
    },
    stop: async () => {
      for (const a of agents) a.stop();
      await server.stop();
      await proxy.stop();
    },
  };
}
