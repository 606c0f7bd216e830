import { describe, expect, it } from 'vitest';

import { checkDto } from '../validation/validate';
import { TUNNEL_OPS, isTunnelOp, parseOpReply, parseOpRequest, type TunnelOp } from './contract';
import { CLUSTER_OP } from './ops';
import {
  ProgressEvent,
  RenewReply,
  RenewRequest,
  RPC_ERROR,
  RPC_OP,
  RpcError,
  rpcResult,
  validateRpcRequest,
} from './rpc';

const SID = '0190f0f0-aaaa-7bbb-8ccc-000000000001';
const STREAM = { streamId: 3, sessionId: 's-1', rx: { 1: 100, 2: 0 } };

/** A good reply of each operation, and one of the wrong shape with the field it names. */
const REPLIES: Record<TunnelOp, { good: unknown; bad: unknown; names: string }> = {
  [RPC_OP.ping]: { good: { at: 1 }, bad: { at: 'now' }, names: 'at must be a number' },
  [RPC_OP.hello]: {
    good: { cluster: 'edge', version: '1', certNotAfter: 'x' },
    bad: { cluster: 'edge', version: 1, certNotAfter: 'x' },
    names: 'version must be text of 1 to 128 characters',
  },
  [RPC_OP.resume]: {
    good: { streams: [STREAM], splitData: true },
    bad: { streams: [{ ...STREAM, rx: { stdout: 1 } }] },
    names: 'streams.0.rx must map channels to offsets',
  },
  [RPC_OP.adopt]: {
    good: { streams: [{ streamId: 3 }, { streamId: 5, error: 'output before 100 is no longer kept' }] },
    bad: { streams: [{ streamId: -1 }] },
    names: 'streams.0.streamId must not be less than 0',
  },
  [RPC_OP.recentRequest]: {
    good: { rid: 'rid-00000001', cluster: 'edge', op: 'ping', startedAt: 'x', outcome: 'ok' },
    bad: { rid: 'rid-00000001', cluster: 'edge', op: 'ping', startedAt: 'x', outcome: 'maybe' },
    names: 'outcome must be one of the following values',
  },
  [CLUSTER_OP.ca]: {
    good: { caPem: 'PEM', server: 'https://10.0.0.1:6443', source: 'cluster-info' },
    bad: { caPem: 'PEM', server: 'https://10.0.0.1:6443', source: 'guess' },
    names: 'source must be one of the following values',
  },
  [CLUSTER_OP.provision]: { good: { ok: true }, bad: { ok: 'yes' }, names: 'ok must be equal to true' },
  [CLUSTER_OP.teardown]: { good: { ok: true }, bad: {}, names: 'ok must be equal to true' },
  [CLUSTER_OP.reap]: {
    good: { removed: [SID] },
    bad: { removed: ['../x'] },
    names: 'removed: each value must be a session id',
  },
  [CLUSTER_OP.readFile]: {
    good: { content: 'ls\n', truncated: false },
    bad: { content: 'ls\n', truncated: 'no' },
    names: 'truncated must be a boolean value',
  },
  [CLUSTER_OP.listPods]: {
    good: { pods: [{ namespace: 'ns', name: 'web-0', phase: 'Running', containers: ['app'] }] },
    bad: { pods: [{ namespace: 'ns', name: 'web-0', phase: 'Running', containers: 'app' }] },
    names: 'pods.0.containers must be an array',
  },
};

function caught(fn: () => unknown): RpcError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  throw new Error('no error');
}

describe('TUNNEL_OPS', () => {
  it('declares every operation of the tunnel and of the cluster', () => {
    const all = [...Object.values(RPC_OP), ...Object.values(CLUSTER_OP)].sort();
    expect(Object.keys(TUNNEL_OPS).sort()).toEqual(all);
    for (const op of all) expect(isTunnelOp(op)).toBe(true);
    expect(isTunnelOp('toString')).toBe(false);
    expect(isTunnelOp('test.count')).toBe(false);
  });

  it.each(Object.keys(REPLIES) as TunnelOp[])(
    '%s: a good reply passes, a wrong one is E_BAD_REPLY naming the op and field',
    (op) => {
      const { good, bad, names } = REPLIES[op];
      expect(parseOpReply(op, good)).toEqual(good);
      const err = caught(() => parseOpReply(op, bad));
      expect(err.code).toBe(RPC_ERROR.badReply);
      expect(err.message).toMatch(new RegExp(`^the agent's reply to ${op.replace('.', '\\.')}: `));
      expect(err.message).toContain(names);
      for (const notAnObject of ['x', 7, [], undefined])
        expect(caught(() => parseOpReply(op, notAnObject)).message).toBe(
          `the agent's reply to ${op}: must be an object`,
        );
    },
  );

  it('takes null only where the reply may be null (no record of that request)', () => {
    expect(parseOpReply(RPC_OP.recentRequest, null)).toBeNull();
    expect(caught(() => parseOpReply(CLUSTER_OP.reap, null)).code).toBe(RPC_ERROR.badReply);
  });

  it('bounds the lists in replies', () => {
    const pod = { namespace: 'ns', name: 'p', phase: 'Running', containers: ['c'] };
    expect(
      caught(() => parseOpReply(CLUSTER_OP.listPods, { pods: Array(5001).fill(pod) })).message,
    ).toContain('pods must contain no more than 5000 elements');
    expect(
      caught(() => parseOpReply(CLUSTER_OP.listPods, { pods: [{ ...pod, name: 'P' }] })).message,
    ).toContain('pods.0.name must be a pod name');
    expect(
      caught(() => parseOpReply(RPC_OP.resume, { streams: Array(4097).fill(STREAM) })).message,
    ).toContain('streams must contain no more than 4096 elements');
    expect(
      caught(() =>
        parseOpReply(CLUSTER_OP.readFile, { content: 'x'.repeat(8 * 1024 * 1024 + 1), truncated: true }),
      ).message,
    ).toContain('content must be shorter than or equal to 8388608 characters');
  });

  it('checks the resume request and keeps the bounds of its settings', () => {
    const ok = { streams: [STREAM], splitData: true, graceSeconds: 120, maxSessionSeconds: 28_800 };
    expect(parseOpRequest(RPC_OP.resume, ok)).toEqual(ok);
    expect(parseOpRequest(RPC_OP.resume, { streams: [] })).toEqual({ streams: [] });
    for (const [bad, names] of [
      [{ ...ok, graceSeconds: 0 }, 'graceSeconds must not be less than 1'],
      [{ ...ok, graceSeconds: 86_401 }, 'graceSeconds must not be greater than 86400'],
      [{ ...ok, maxSessionSeconds: 9 }, 'maxSessionSeconds must not be less than 10'],
      [{ ...ok, maxSessionSeconds: 604_801 }, 'maxSessionSeconds must not be greater than 604800'],
      [{ ...ok, streams: [{ ...STREAM, streamId: -1 }] }, 'streams.0.streamId must not be less than 0'],
      [
        { ...ok, streams: [{ ...STREAM, streamId: 2 ** 32 }] },
        'streams.0.streamId must not be greater than 4294967295',
      ],
      [
        { ...ok, streams: [{ ...STREAM, sessionId: 's'.repeat(254) }] },
        'streams.0.sessionId must be shorter than or equal to 253',
      ],
      [{ ...ok, streams: [{ ...STREAM, rx: { 1: -1 } }] }, 'streams.0.rx must map channels to offsets'],
      [{ ...ok, streams: [{ ...STREAM, rx: { 1: 2 ** 53 } }] }, 'streams.0.rx must map channels to offsets'],
      [{ ...ok, streams: 'all' }, 'streams must be a list'],
      [{ ...ok, streams: ['x'] }, 'streams.0: must be an object'],
    ] as const) {
      const err = caught(() => parseOpRequest(RPC_OP.resume, bad));
      expect(err.code).toBe(RPC_ERROR.badRequest);
      expect(err.message).toMatch(/^resume: /);
      expect(err.message).toContain(names);
    }
  });

  it('checks the diagnostics query', () => {
    expect(parseOpRequest(RPC_OP.recentRequest, { rid: 'rid-1' })).toEqual({ rid: 'rid-1' });
    expect(caught(() => parseOpRequest(RPC_OP.recentRequest, { rid: 7 })).message).toMatch(
      /^diag\.request: .*rid must be a string$/,
    );
  });
});

describe('the request envelope', () => {
  const now = 1_000_000;
  const good = { rid: 'rid-00000001', op: 'ping', deadline: now + 1000, payload: { a: 1 } };

  it('passes a good request through, payload untouched', () => {
    expect(validateRpcRequest(good, now)).toEqual(good);
  });

  it.each([
    ['not an object', 'x', 'rpc request: must be an object'],
    ['a short rid', { ...good, rid: 'r1' }, 'rpc request: rid must be 8 to 64 letters, digits or dashes'],
    ['a rid with a slash', { ...good, rid: 'rid/00000001' }, 'rpc request: rid must be 8 to 64'],
    ['an op with a space', { ...good, op: 'a b' }, 'rpc request: op must be an operation name'],
    [
      'a deadline as text',
      { ...good, deadline: String(now + 1000) },
      'rpc request: deadline must be a number',
    ],
    ['an infinite deadline', { ...good, deadline: Infinity }, 'rpc request: deadline must be a number'],
  ])('refuses %s with E_RPC_BAD_REQUEST naming the field', (_n, v, message) => {
    const err = caught(() => validateRpcRequest(v, now));
    expect(err.code).toBe(RPC_ERROR.badRequest);
    expect(err.message).toContain(message);
  });

  it('refuses a deadline that passed with E_RPC_DEADLINE', () => {
    expect(caught(() => validateRpcRequest({ ...good, deadline: now }, now)).code).toBe(RPC_ERROR.deadline);
  });
});

describe(rpcResult.name, () => {
  it('returns the result of a good answer', () => {
    expect(rpcResult({ ok: true, result: { at: 1 } }, 'ping')).toEqual({ at: 1 });
    expect(rpcResult({ ok: true, result: null }, 'diag.request')).toBeNull();
  });

  it('throws the error of a failed answer, bounded', () => {
    const err = caught(() =>
      rpcResult(
        {
          ok: false,
          error: { code: 'E_KUBERNETES', message: 'm'.repeat(5000), status: 403, reason: 'r'.repeat(300) },
        },
        'pods.list',
      ),
    );
    expect(err).toMatchObject({ code: RPC_ERROR.kubernetes, status: 403 });
    expect(err.message).toHaveLength(4096);
    expect(err.reason).toHaveLength(256);
  });

  it.each([
    ['not an object', 'not a reply'],
    ['null', null],
    ['no ok', { result: 1 }],
    ['a failure without an error', { ok: false }],
    ['an unknown error code', { ok: false, error: { code: 'E_WHATEVER', message: 'x' } }],
    ['an error without a message', { ok: false, error: { code: 'E_KUBERNETES' } }],
    ['a fractional status', { ok: false, error: { code: 'E_KUBERNETES', message: 'x', status: 4.5 } }],
  ])('an answer with %s is E_BAD_REPLY', (_n, answer) => {
    expect(caught(() => rpcResult(answer, 'hello'))).toMatchObject({
      code: RPC_ERROR.badReply,
      message: 'the agent answered hello with a malformed reply',
    });
  });
});

describe('event payloads', () => {
  it('checks progress notes', () => {
    expect(
      checkDto(ProgressEvent, { rid: 'rid-00000001', phase: 'pod', message: 'creating' }, 'lenient').ok,
    ).toBe(true);
    expect(
      checkDto(ProgressEvent, { rid: 'x'.repeat(100), phase: 1, message: null }, 'lenient'),
    ).toMatchObject({
      ok: false,
      problems: expect.arrayContaining(['rid must be a request id', 'phase must be a string']) as unknown,
    });
    expect(checkDto(ProgressEvent, { rid: 'rid-00000001', phase: 'p', message: 'm'.repeat(16_385) }).ok).toBe(
      false,
    );
  });

  it('checks renewal requests and answers', () => {
    expect(checkDto(RenewRequest, { csr: 'PEM' }, 'lenient').ok).toBe(true);
    expect(checkDto(RenewRequest, { csr: '' }, 'lenient').ok).toBe(false);
    expect(checkDto(RenewRequest, { csr: 'x'.repeat(16_385) }, 'lenient').ok).toBe(false);
    expect(checkDto(RenewReply, { ok: true, certificate: 'PEM' }, 'lenient').ok).toBe(true);
    expect(checkDto(RenewReply, { ok: false, error: 'renewal refused' }, 'lenient').ok).toBe(true);
    expect(checkDto(RenewReply, { ok: true }, 'lenient')).toMatchObject({
      ok: false,
      problems: expect.arrayContaining(['certificate must be a string']) as unknown,
    });
    expect(checkDto(RenewReply, { ok: 'yes' }, 'lenient').ok).toBe(false);
  });
});
