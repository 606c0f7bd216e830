import { CLUSTER_OP, RPC_ERROR, RPC_OP, RpcError, type RpcResponse } from '@periscope/protocol';
import pino from 'pino';
import { describe, expect, it } from 'vitest';

import { RpcDispatcher, type OpHandlers, type RpcContext } from './rpc-dispatcher';

const log = pino({ level: 'silent' });
let seq = 0;
const rid = (): string => `rid-${String(++seq).padStart(8, '0')}`;
const req = (op: string, payload: unknown, deadline = Date.now() + 5000) => ({
  rid: rid(),
  op,
  deadline,
  payload,
});

function errorOf(r: RpcResponse): { code: string; message: string } {
  if (r.ok) throw new Error(`expected an error, got ${JSON.stringify(r.result)}`);
  return r.error;
}

describe(RpcDispatcher.name, () => {
  it('checks the payload against the operation before its handler runs', async () => {
    const sut = new RpcDispatcher('edge', log);
    const seen: unknown[] = [];
    sut.serve({
      [CLUSTER_OP.teardown]: (r) => {
        seen.push(r);
        return Promise.resolve({ ok: true as const });
      },
    });
    const good = { sessionId: '0190f0f0-aaaa-7bbb-8ccc-000000000001', namespace: 'shells', extra: 1 };
    expect(await sut.handle(req(CLUSTER_OP.teardown, good))).toEqual({ ok: true, result: { ok: true } });
    expect(seen).toEqual([{ sessionId: good.sessionId, namespace: 'shells' }]);

    const bad = errorOf(await sut.handle(req(CLUSTER_OP.teardown, { ...good, namespace: '../x' })));
    expect(bad).toEqual({
      code: RPC_ERROR.badRequest,
      message: 'shell.teardown: namespace must be a namespace name (DNS label)',
    });
    expect(seen).toHaveLength(1);
  });

  it('refuses a bad envelope, an unknown operation and a deadline already passed', async () => {
    const sut = new RpcDispatcher('edge', log);
    expect(errorOf(await sut.handle({ rid: 'x', op: 'ping', deadline: Date.now() + 1000 }))).toMatchObject({
      code: RPC_ERROR.badRequest,
      message: expect.stringContaining('rpc request: rid must be 8 to 64') as unknown,
    });
    expect(errorOf(await sut.handle('garbage'))).toMatchObject({ code: RPC_ERROR.badRequest });
    expect(errorOf(await sut.handle(req('no.such.op', {})))).toEqual({
      code: RPC_ERROR.unknownOp,
      message: 'unknown operation no.such.op',
    });
    expect(errorOf(await sut.handle(req(RPC_OP.ping, {}, Date.now() - 1)))).toMatchObject({
      code: RPC_ERROR.deadline,
    });
  });

  it('answers a repeated request id from memory instead of running the operation again', async () => {
    const sut = new RpcDispatcher('edge', log);
    let runs = 0;
    sut.serve({ [RPC_OP.ping]: () => Promise.resolve({ at: ++runs }) });
    const r = req(RPC_OP.ping, {});
    expect(await sut.handle(r)).toEqual({ ok: true, result: { at: 1 } });
    expect(await sut.handle(r)).toEqual({ ok: true, result: { at: 1 } });
    expect(await sut.handle(req(RPC_OP.ping, {}))).toEqual({ ok: true, result: { at: 2 } });
    expect(sut.remembered).toBe(2);
  });

  it('aborts the handler’s signal at the deadline', async () => {
    const sut = new RpcDispatcher('edge', log);
    let ctx: RpcContext | undefined;
    sut.serve({
      [CLUSTER_OP.ca]: (_r, c) => {
        ctx = c;
        return new Promise((_, reject) => {
          c.signal.addEventListener('abort', () => {
            reject(new Error('aborted by the deadline'));
          });
        });
      },
    });
    const started = Date.now();
    const answer = await sut.handle(req(CLUSTER_OP.ca, {}, Date.now() + 100));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(ctx?.signal.aborted).toBe(true);
    expect(errorOf(answer)).toEqual({ code: RPC_ERROR.internal, message: 'aborted by the deadline' });
    expect(sut.ring.find((r) => r.op === CLUSTER_OP.ca)).toMatchObject({ outcome: 'error' });
  });

  it('passes RpcErrors through, turns other errors into E_RPC_INTERNAL, and reports progress', async () => {
    const sut = new RpcDispatcher('edge', log);
    sut.serve({
      [CLUSTER_OP.listPods]: () =>
        Promise.reject(
          new RpcError({ code: RPC_ERROR.kubernetes, message: 'no', status: 403, reason: 'Forbidden' }),
        ),
      [CLUSTER_OP.reap]: (_r, c) => {
        c.progress('sweep', 'listing');
        return Promise.reject(new TypeError('boom'));
      },
    });
    expect(errorOf(await sut.handle(req(CLUSTER_OP.listPods, { limit: 1 })))).toEqual({
      code: RPC_ERROR.kubernetes,
      message: 'no',
      status: 403,
      reason: 'Forbidden',
    });
    const progress: unknown[] = [];
    const r = req(CLUSTER_OP.reap, { namespace: 'ns', liveSessionIds: [], graceMs: 0 });
    expect(errorOf(await sut.handle(r, (p) => progress.push(p)))).toEqual({
      code: RPC_ERROR.internal,
      message: 'boom',
    });
    expect(progress).toEqual([{ rid: r.rid, phase: 'sweep', message: 'listing' }]);
  });

  it('serves extra operations untyped, but never a tunnel operation that way', async () => {
    const sut = new RpcDispatcher('edge', log);
    sut.registerUntyped('test.echo', (p) => Promise.resolve(p));
    expect(await sut.handle(req('test.echo', { any: ['thing'] }))).toEqual({
      ok: true,
      result: { any: ['thing'] },
    });
    expect(() => {
      sut.registerUntyped(RPC_OP.ping, () => Promise.resolve(null));
    }).toThrow(/serve it with serve\(\)/);
  });

  it('types handlers by the map (checked when this file compiles)', () => {
    const ok: OpHandlers<typeof RPC_OP.ping> = { [RPC_OP.ping]: () => Promise.resolve({ at: 1 }) };
    // @ts-expect-error a ping answers {at: number}, not a string
    const wrongReply: OpHandlers<typeof RPC_OP.ping> = { [RPC_OP.ping]: () => Promise.resolve('pong') };
    // @ts-expect-error a record for both operations must have both handlers
    const missing: OpHandlers<typeof RPC_OP.ping | typeof CLUSTER_OP.ca> = ok;
    const payloadTyped: OpHandlers<typeof CLUSTER_OP.readFile> = {
      [CLUSTER_OP.readFile]: (r) => Promise.resolve({ content: r.path, truncated: r.maxBytes < 0 }),
    };
    expect([ok, wrongReply, missing, payloadTyped]).toHaveLength(4);
  });
});
