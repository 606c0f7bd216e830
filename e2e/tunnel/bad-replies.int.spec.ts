/**
 * Every tunnel operation answered with a reply of the wrong shape, over real TLS + Socket.IO on
 * loopback: the request fails with a clear E_BAD_REPLY naming the operation and the field, never
 * a crash, and the server goes on serving (the next request on the same link succeeds).
 */
import { CLUSTER_OP, RPC_ERROR, RPC_EVENT, RPC_OP, type OpRequest, type TunnelOp } from '@periscope/protocol';
import { io, type Socket } from 'socket.io-client';
import msgpackParser from 'socket.io-msgpack-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AgentGateway } from '../../apps/server/src/tunnel/agent-gateway';
import type { AgentLink } from '../../apps/server/src/tunnel/agent-link';
import { agentIdentity, startHarness, type Harness } from './tunnel-fixture';
import { until } from '../support/wait';

const SID = '0190f0f0-aaaa-7bbb-8ccc-000000000001';
const HELLO = { cluster: 'edge-1', version: 'fake', certNotAfter: '2030-01-01T00:00:00.000Z' };

/** For each operation: a request the server may send, a good answer, a wrong one and what the error names. */
const CASES: { [O in TunnelOp]: { request: OpRequest<O>; good: unknown; wrong: unknown; names: string } } = {
  [RPC_OP.ping]: { request: {}, good: { at: 1 }, wrong: { at: 'noon' }, names: 'at must be a number' },
  [RPC_OP.hello]: {
    request: {},
    good: HELLO,
    wrong: { ...HELLO, version: 7 },
    names: 'version must be text of 1 to 128 characters',
  },
  [RPC_OP.resume]: {
    request: { streams: [] },
    good: { streams: [] },
    wrong: { streams: [{ streamId: -1, sessionId: 's', rx: {} }] },
    names: 'streams.0.streamId must not be less than 0',
  },
  [RPC_OP.adopt]: {
    request: { streams: [{ streamId: 2, sessionId: SID, from: 0 }] },
    good: { streams: [{ streamId: 2 }] },
    wrong: { streams: [{ streamId: 'two' }] },
    names: 'streams.0.streamId must be an integer number',
  },
  [RPC_OP.recentRequest]: {
    request: { rid: 'rid-00000001' },
    good: null,
    wrong: { rid: 'rid-00000001' },
    names: 'outcome must be one of the following values',
  },
  [CLUSTER_OP.ca]: {
    request: {},
    good: { caPem: 'PEM', server: 'https://10.0.0.1:6443', source: 'kubeconfig' },
    wrong: { caPem: 'PEM', server: 'file:///etc/passwd', source: 'kubeconfig' },
    names: 'server must be an apiserver URL',
  },
  [CLUSTER_OP.provision]: {
    request: {
      sessionId: SID,
      namespace: 'periscope-system',
      tier: 'admin',
      subject: 'alice',
      image: 'img:1',
      imagePullPolicy: 'IfNotPresent',
      mode: 'bash',
      tokenSeconds: 3600,
      podStartTimeoutMs: 5000,
    },
    good: { ok: true },
    wrong: { ok: 1 },
    names: 'ok must be equal to true',
  },
  [CLUSTER_OP.teardown]: {
    request: { sessionId: SID, namespace: 'periscope-system' },
    good: { ok: true },
    wrong: 'done',
    names: 'must be an object',
  },
  [CLUSTER_OP.reap]: {
    request: { namespace: 'periscope-system', liveSessionIds: [], graceMs: 0 },
    good: { removed: [SID] },
    wrong: { removed: SID },
    names: 'removed must be an array',
  },
  [CLUSTER_OP.readFile]: {
    request: { namespace: 'ns', pod: 'p', container: 'c', path: '/tmp/log', maxBytes: 10 },
    good: { content: 'ls', truncated: false },
    wrong: { content: ['ls'], truncated: false },
    names: 'content must be a string',
  },
  [CLUSTER_OP.listPods]: {
    request: { limit: 10 },
    good: { pods: [{ namespace: 'ns', name: 'web-0', phase: 'Running', containers: ['app'] }] },
    wrong: { pods: [{ namespace: 'ns', name: '../web-0', phase: 'Running', containers: ['app'] }] },
    names: 'pods.0.name must be a pod name',
  },
};

/** An agent on a raw Socket.IO connection that answers each operation as `answer` says. */
function fakeAgent(
  id: { certPem: string; keyPem: string; caPem: string },
  port: number,
  answer: (op: TunnelOp) => unknown,
): { socket: Socket; dropped: () => boolean } {
  const socket = io(`https://127.0.0.1:${port}/agent`, {
    transports: ['websocket'],
    parser: msgpackParser,
    reconnection: false,
    cert: id.certPem,
    key: id.keyPem,
    ca: id.caPem,
    rejectUnauthorized: true,
  });
  let dropped = false;
  socket.on('disconnect', () => (dropped = true));
  socket.on('connect_error', () => (dropped = true));
  socket.on(RPC_EVENT, (req: { op: TunnelOp }, ack: (r: unknown) => void) => {
    ack({ ok: true, result: answer(req.op) });
  });
  return { socket, dropped: () => dropped };
}

describe('replies of the wrong shape (real TLS + Socket.IO)', () => {
  let h: Harness;
  let id: { certPem: string; keyPem: string; caPem: string };
  let agent: ReturnType<typeof fakeAgent> | undefined;
  let link: AgentLink;
  /** the operation the fake agent answers wrongly */
  let wrong: TunnelOp | undefined;

  beforeAll(async () => {
    h = await startHarness({ clusters: ['edge-1'] });
    id = await agentIdentity(h.ca, 'edge-1');
    agent = fakeAgent(id, h.server.address.port, (op) => (op === wrong ? CASES[op].wrong : CASES[op].good));
    link = await until('the fake agent to connect', () => {
      const l = h.server.link('edge-1');
      return l?.connected ? l : undefined;
    });
  });

  afterAll(async () => {
    agent?.socket.close();
    await h.stop();
  });

  const served = Object.keys(CASES).filter((op) => op !== RPC_OP.hello && op !== RPC_OP.resume) as TunnelOp[];

  it.each(served)(
    '%s: a wrong reply is E_BAD_REPLY naming the op and field; the next request succeeds',
    async (op) => {
      const request = CASES[op].request as OpRequest<typeof op>;
      wrong = op;
      const err = await link.request(op, request, { timeoutMs: 5000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: RPC_ERROR.badReply });
      expect((err as Error).message).toMatch(new RegExp(`^the agent's reply to ${op.replace('.', '\\.')}: `));
      expect((err as Error).message).toContain(CASES[op].names);
      expect(link.ring.find((r) => r.op === op && r.outcome === 'error')?.error).toBe((err as Error).message);

      wrong = undefined;
      expect(await link.request(op, request, { timeoutMs: 5000 })).toEqual(CASES[op].good);
      expect(await link.ping()).toBeGreaterThan(0);
      expect(link.connected).toBe(true);
    },
  );

  it('the cluster seam the server uses passes the E_BAD_REPLY on (no cast of the reply)', async () => {
    const gateway = new AgentGateway(() => h.server.link('edge-1'), 'edge-1');
    wrong = CLUSTER_OP.listPods;
    await expect(gateway.listPods({ limit: 10 })).rejects.toMatchObject({
      code: RPC_ERROR.badReply,
      message: expect.stringContaining('pods.0.name must be a pod name') as unknown,
    });
    wrong = CLUSTER_OP.reap;
    await expect(
      gateway.reapShells({ namespace: 'periscope-system', liveSessionIds: [], graceMs: 0 }),
    ).rejects.toMatchObject({ code: RPC_ERROR.badReply });
    wrong = undefined;
    expect(await gateway.listPods({ limit: 10 })).toEqual([
      { namespace: 'ns', name: 'web-0', phase: 'Running', containers: ['app'] },
    ]);
  });

  it('a wrong resume fails the handshake with E_BAD_REPLY; a good agent connects afterwards', async () => {
    agent?.socket.close();
    await until('the link to drop', () => (link.connected ? undefined : true));
    wrong = RPC_OP.resume;
    const bad = fakeAgent(id, h.server.address.port, (op) =>
      op === wrong ? CASES[op].wrong : CASES[op].good,
    );
    await until('the connection with the wrong resume to be dropped', () =>
      bad.dropped() ? true : undefined,
    );
    bad.socket.close();
    const rec = link.ring.find((r) => r.op === RPC_OP.resume && r.outcome === 'error');
    expect(rec?.error).toContain("the agent's reply to resume: streams.0.streamId must not be less than 0");

    wrong = undefined;
    agent = fakeAgent(id, h.server.address.port, (op) => (op === wrong ? CASES[op].wrong : CASES[op].good));
    await until('the good agent to connect', () => (link.connected ? true : undefined));
    expect(await link.ping()).toBeGreaterThan(0);
  });

  it('a wrong hello marks the cluster unavailable with the reason; a good one clears it', async () => {
    agent?.socket.close();
    await until('the link to drop', () => (link.connected ? undefined : true));
    wrong = RPC_OP.hello;
    const bad = fakeAgent(id, h.server.address.port, (op) =>
      op === wrong ? CASES[op].wrong : CASES[op].good,
    );
    const problem = await until('the hello to be refused', () => link.unavailable);
    expect(problem.reason).toBe('agent hello: version must be text of 1 to 128 characters');
    await until('the connection with the wrong hello to be dropped', () =>
      bad.dropped() ? true : undefined,
    );
    bad.socket.close();

    wrong = undefined;
    agent = fakeAgent(id, h.server.address.port, (op) => (op === wrong ? CASES[op].wrong : CASES[op].good));
    await until('the good agent to connect', () => (link.connected ? true : undefined));
    expect(link.unavailable).toBeUndefined();
    expect(link.hello).toEqual(HELLO);
  });
});
