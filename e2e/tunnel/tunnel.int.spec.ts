import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:https';

import { CHANNEL, RESET_CODE, RPC_ERROR, RPC_OP, RpcError, type StreamExit } from '@periscope/protocol';
import { io } from 'socket.io-client';
import msgpackParser from 'socket.io-msgpack-parser';
import { afterEach, describe, expect, it } from 'vitest';

import type { AgentLink } from '../../apps/server/src/tunnel/agent-link';
import { agentIdentity, newCa, startHarness, type Harness } from './tunnel-fixture';
import { until } from '../support/wait';

const OPEN = { namespace: 'ns', pod: 'p', container: 'c', tty: false, stdin: true };

async function connectedLink(h: Harness, cluster: string): Promise<AgentLink> {
  return until(`${cluster} to connect`, () => {
    const l = h.server.link(cluster);
    return l?.connected && l.mux.attached ? l : undefined;
  });
}

/** Opens a stream from the server side and collects what comes back. */
function openStream(link: AgentLink, sessionId: string, command: string[]) {
  const hash = createHash('sha256');
  const state = {
    bytes: 0,
    text: '',
    exit: undefined as StreamExit | undefined,
    closed: undefined as { code: number; reason: string } | undefined,
  };
  const stream = link.mux.open(
    { ...OPEN, sessionId, command },
    {
      onData: (ch, b) => {
        hash.update(b);
        state.bytes += b.length;
        if (state.bytes < 4096) state.text += Buffer.from(b).toString();
        stream.consumed(ch, b.length);
      },
      onExit: (e) => {
        state.exit = e;
      },
      onClose: (code, reason) => {
        state.closed = { code, reason };
      },
    },
  );
  return { stream, state, digest: () => hash.digest('hex') };
}

/** Writes `data` to stdin honouring backpressure, then half-closes. */
async function writeAll(stream: ReturnType<typeof openStream>['stream'], data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; at += 64 * 1024) {
    if (!stream.write(CHANNEL.stdin, data.subarray(at, at + 64 * 1024))) {
      await new Promise<void>((resolve) => (stream.handlers.onWritable = resolve));
    }
  }
  stream.end(CHANNEL.stdin);
}

function floodDigest(total: number): string {
  const hash = createHash('sha256');
  let seed = 7;
  for (let sent = 0; sent < total;) {
    const n = Math.min(64 * 1024, total - sent);
    const chunk = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      chunk[i] = seed & 0xff;
    }
    hash.update(chunk);
    sent += n;
  }
  return hash.digest('hex');
}

describe('agent tunnel on loopback (real TLS + Socket.IO)', () => {
  let h: Harness;
  afterEach(async () => {
    await h.stop();
  });

  it('connects with a client certificate, answers requests and remembers request ids', async () => {
    h = await startHarness();
    const agent = await h.agent('edge-1');
    const link = await connectedLink(h, 'edge-1');
    expect(link.hello).toMatchObject({ cluster: 'edge-1', clusterShell: { enabled: true } });
    expect(await link.ping()).toBeGreaterThan(0);
    let runs = 0;
    agent.rpc.registerUntyped('test.count', () => Promise.resolve(++runs));
    expect(await link.requestUntyped('test.count', {}, { rid: 'rid-0000000001' })).toBe(1);
    expect(await link.requestUntyped('test.count', {}, { rid: 'rid-0000000001' })).toBe(1);
    expect(await link.requestUntyped('test.count', {})).toBe(2);
    await expect(link.requestUntyped('no.such.op', {})).rejects.toMatchObject({ code: RPC_ERROR.unknownOp });
    agent.rpc.registerUntyped('test.slow', () => new Promise((r) => setTimeout(r, 2000)));
    await expect(link.requestUntyped('test.slow', {}, { timeoutMs: 200 })).rejects.toMatchObject({
      code: RPC_ERROR.deadline,
    });
    agent.rpc.registerUntyped('test.k8s', () =>
      Promise.reject(
        new RpcError({
          code: RPC_ERROR.kubernetes,
          message: 'pods "x" is forbidden',
          status: 403,
          reason: 'Forbidden',
        }),
      ),
    );
    await expect(link.requestUntyped('test.k8s', {})).rejects.toMatchObject({
      code: RPC_ERROR.kubernetes,
      status: 403,
      reason: 'Forbidden',
    });
    const rec = link.ring.find((r) => r.op === 'test.k8s');
    expect(rec).toMatchObject({ outcome: 'error', cluster: 'edge-1' });
    const agentRec = await link.request(RPC_OP.recentRequest, { rid: rec!.rid });
    expect(agentRec).toMatchObject({ rid: rec!.rid, op: 'test.k8s', outcome: 'error' });
  });

  it('streams 64 MiB each way with matching checksums', async () => {
    h = await startHarness();
    await h.agent('edge-1');
    const link = await connectedLink(h, 'edge-1');
    const total = 64 * 1024 * 1024;
    const down = openStream(link, 'down', ['flood', String(total)]);
    const upData = randomBytes(total);
    const up = openStream(link, 'up', ['sink']);
    await writeAll(up.stream, upData);
    const downExit = await until('download to finish', () => down.state.exit, 120_000);
    const upExit = await until('upload to finish', () => up.state.exit, 120_000);
    expect(down.state.bytes).toBe(total);
    expect(down.digest()).toBe(floodDigest(total));
    expect(downExit.message).toBe(floodDigest(total));
    expect(upExit.message).toBe(createHash('sha256').update(upData).digest('hex'));
    await until('streams freed', () => link.mux.size === 0);
  }, 180_000);

  it('carries resize and the exit status', async () => {
    h = await startHarness();
    await h.agent('edge-1');
    const link = await connectedLink(h, 'edge-1');
    const s = openStream(link, 'tty', ['echo']);
    s.stream.resize(132, 43);
    s.stream.write(CHANNEL.stdin, Buffer.from('hello'));
    s.stream.end(CHANNEL.stdin);
    const exit = await until('exit', () => s.state.exit);
    expect(s.state.text).toContain('[size 132x43]');
    expect(s.state.text).toContain('hello');
    expect(exit).toEqual({ exitCode: 0, status: 'Success' });
  });

  it('keeps a typing session responsive while another floods the same tunnel', async () => {
    h = await startHarness();
    await h.agent('edge-1');
    const link = await connectedLink(h, 'edge-1');
    const flood = openStream(link, 'flood', ['flood', String(256 * 1024 * 1024)]);
    await until('flood running', () => flood.state.bytes > 8 * 1024 * 1024);
    const typing = openStream(link, 'typing', ['echo']);
    const rtts: number[] = [];
    for (let i = 0; i < 30; i++) {
      const before = typing.state.bytes;
      const t = performance.now();
      typing.stream.write(CHANNEL.stdin, Buffer.from('k'));
      await until('echo', () => typing.state.bytes > before, 5000);
      rtts.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
    rtts.sort((a, b) => a - b);
    expect(flood.state.exit).toBeUndefined(); // still flooding while we typed
    expect(rtts[Math.floor(rtts.length * 0.5)]).toBeLessThan(50);
    flood.stream.reset(RESET_CODE.closedByPeer, 'test done');
  });

  it('resumes a stream with an identical checksum after a 5 s cut', async () => {
    h = await startHarness();
    await h.agent('edge-1');
    const link = await connectedLink(h, 'edge-1');
    const total = 48 * 1024 * 1024;
    const down = openStream(link, 'resume', ['flood', String(total)]);
    await until('some bytes', () => down.state.bytes > 4 * 1024 * 1024);
    h.proxy.cut();
    await until('server notices', () => !link.connected);
    const at = down.state.bytes;
    await new Promise((r) => setTimeout(r, 5000));
    h.proxy.heal();
    await until('download to finish', () => down.state.exit, 60_000);
    expect(at).toBeLessThan(total);
    expect(down.state.bytes).toBe(total);
    expect(down.digest()).toBe(floodDigest(total));
  });

  it('resets streams on both ends when the cut outlasts the grace period', async () => {
    h = await startHarness({ graceMs: 1500 });
    // The agent's own default is 120 s: it follows the grace the server announced at resume.
    const agent = await h.agent('edge-1', { graceMs: 120_000 });
    const link = await connectedLink(h, 'edge-1');
    const s = openStream(link, 'grace', ['echo']);
    await until('agent has the stream', () => agent.mux.size === 1);
    h.proxy.cut();
    const closed = await until('server-side reset', () => s.state.closed, 10_000);
    expect(closed.code).toBe(RESET_CODE.graceExpired);
    await until('agent-side reset', () => agent.mux.size === 0, 10_000);
    expect(link.mux.size).toBe(0);
  });

  it('lists a restarted agent again', async () => {
    h = await startHarness();
    const first = await h.agent('edge-1');
    await connectedLink(h, 'edge-1');
    first.stop();
    await until('disconnect seen', () => !h.server.link('edge-1')?.connected);
    await h.agent('edge-1');
    const link = await connectedLink(h, 'edge-1');
    expect(await link.ping()).toBeGreaterThan(0);
  });

  describe('hostile clients', () => {
    async function tryConnect(
      identity: { certPem?: string; keyPem?: string; caPem: string },
      port: number,
    ): Promise<string> {
      const socket = io(`https://127.0.0.1:${port}/agent`, {
        transports: ['websocket'],
        parser: msgpackParser,
        reconnection: false,
        timeout: 5000,
        ca: identity.caPem,
        ...(identity.certPem !== undefined ? { cert: identity.certPem, key: identity.keyPem } : {}),
      });
      return new Promise((resolve) => {
        socket.on('connect', () => {
          socket.close();
          resolve('connected');
        });
        socket.on('connect_error', (err) => {
          socket.close();
          resolve(`refused: ${err.message}`);
        });
      });
    }

    it('refuses a client without a certificate, from another CA, or for an unregistered cluster', async () => {
      h = await startHarness();
      const port = h.server.address.port;
      expect(await tryConnect({ caPem: h.ca.certPem }, port)).toMatch(/^refused/);
      const otherCa = await newCa();
      const foreign = await agentIdentity(otherCa, 'edge-1');
      expect(await tryConnect({ ...foreign, caPem: h.ca.certPem }, port)).toMatch(/^refused/);
      const unregistered = await agentIdentity(h.ca, 'rogue-cluster');
      expect(await tryConnect(unregistered, port)).toMatch(/^refused/);
      expect(await tryConnect(await agentIdentity(h.ca, 'edge-1'), port)).toBe('connected');
      expect(h.server.refusals.get('no_certificate')).toBe(1);
      expect(h.server.refusals.get('bad_chain')).toBe(1);
      expect(h.server.refusals.get('unknown_cluster')).toBe(1);
    });

    it('refuses connections beyond the admission rate and admits again once it refills', async () => {
      h = await startHarness({ admissions: { perSecond: 2, burst: 5 } });
      const port = h.server.address.port;
      const id = await agentIdentity(h.ca, 'edge-1');
      const started = Date.now();
      const results = await Promise.all(Array.from({ length: 30 }, () => tryConnect(id, port)));
      const seconds = (Date.now() - started) / 1000;
      const admitted = results.filter((r) => r === 'connected').length;
      // The burst, plus what refilled (2/s) while the handshakes ran.
      expect(admitted).toBeGreaterThanOrEqual(5);
      expect(admitted).toBeLessThanOrEqual(5 + Math.ceil(seconds * 2));
      expect(results.filter((r) => r.startsWith('refused'))).toHaveLength(30 - admitted);
      expect(h.server.refusals.get('rate_limited')).toBe(30 - admitted);
      await new Promise((r) => setTimeout(r, 1100));
      expect(await tryConnect(id, port)).toBe('connected');
    });

    it('does not let a certificate for cluster A serve cluster B (nor A, while its hello claims B)', async () => {
      h = await startHarness();
      const a = await agentIdentity(h.ca, 'edge-1');
      const agent = await h.agent('edge-2', { identity: a });
      // The certificate names edge-1, the agent's hello edge-2: refused at the handshake, and
      // edge-1 shows why instead of taking edge-2's claims (shell namespace, protected namespaces).
      const problem = await until('the handshake to be refused', () => h.server.link('edge-1')?.unavailable);
      expect(problem.reason).toBe('agent hello: names cluster "edge-2", its certificate edge-1');
      expect(h.server.link('edge-1')?.connected).toBe(false);
      expect(h.server.link('edge-2')).toBeUndefined();
      agent.stop();
    });

    it('answers plain HTTPS probes with 404 and never crashes on garbage frames', async () => {
      h = await startHarness();
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(`https://127.0.0.1:${h.server.address.port}/`, { ca: h.ca.certPem }, (res) => {
          resolve(res.statusCode ?? 0);
          res.resume();
        });
        req.on('error', reject);
        req.end();
      });
      expect([400, 404]).toContain(status);
      const agent = await h.agent('edge-1');
      const link = await connectedLink(h, 'edge-1');
      link.socket?.emit('f', Buffer.from([1, 2, 3]));
      link.socket?.emit('f', Buffer.alloc(70_000));
      link.socket?.emit('f', 'not binary');
      expect(await link.ping()).toBeGreaterThan(0);
      expect(agent.connected).toBe(true);
    });

    it('bounds pending requests', async () => {
      h = await startHarness();
      const agent = await h.agent('edge-1');
      const link = await connectedLink(h, 'edge-1');
      agent.rpc.registerUntyped('test.hang', () => new Promise((r) => setTimeout(r, 3000)));
      const flood = Array.from({ length: 1100 }, () =>
        link.requestUntyped('test.hang', {}, { timeoutMs: 2000 }).catch((e: unknown) => e),
      );
      const results = await Promise.all(flood);
      expect(
        results.filter((r) => r instanceof RpcError && r.code === RPC_ERROR.busy).length,
      ).toBeGreaterThanOrEqual(100);
      expect(await link.ping()).toBeGreaterThan(0);
    });
  });
});
