import {
  RPC_ERROR,
  RpcError,
  Ring,
  isTunnelOp,
  parseOpRequest,
  validateRpcRequest,
  type OpReply,
  type OpRequest,
  type RequestRecord,
  type RpcResponse,
  type TunnelOp,
} from '@periscope/protocol';
import type { Logger } from 'pino';

export interface RpcContext {
  rid: string;
  deadline: number;
  signal: AbortSignal;
  /** tells the server how a long operation is going (best effort) */
  progress: (phase: string, message: string) => void;
}

/** A handler outside `TUNNEL_OPS` (tests, diagnostics): its payload is not checked. */
export type RpcHandler = (payload: unknown, ctx: RpcContext) => Promise<unknown>;

/** The handler of one tunnel operation: gets the checked request, answers the declared reply. */
export type OpHandler<O extends TunnelOp> = (payload: OpRequest<O>, ctx: RpcContext) => Promise<OpReply<O>>;

/** Handlers of the operations `K`, each typed by the map (a missing or mistyped one does not compile). */
export type OpHandlers<K extends TunnelOp> = { [O in K]: OpHandler<O> };

interface Remembered {
  at: number;
  answer: Promise<RpcResponse>;
}

/**
 * Runs control-plane requests on the agent. A request id seen before (a retry after a reconnect)
 * gets the first answer instead of running the operation again; remembered answers are bounded in
 * number and age. Every request is logged and kept in the diagnostics ring.
 */
export class RpcDispatcher {
  private readonly handlers = new Map<string, RpcHandler>();
  private readonly seen = new Map<string, Remembered>();
  readonly ring: Ring<RequestRecord>;

  constructor(
    private readonly cluster: string,
    private readonly log: Logger,
    private readonly opts: { rememberMax: number; rememberMs: number; ringSize: number } = {
      rememberMax: 2000,
      rememberMs: 10 * 60_000,
      ringSize: 1000,
    },
  ) {
    this.ring = new Ring(opts.ringSize);
  }

  /**
   * Serves the given tunnel operations. Each payload is checked against its operation's request
   * DTO before the handler runs; a bad one is answered E_RPC_BAD_REQUEST naming the field.
   */
  serve<K extends TunnelOp>(handlers: OpHandlers<K>): void {
    // Each entry's types were checked by OpHandlers; here they are stored by name.
    const byName: Partial<Record<TunnelOp, (payload: never, ctx: RpcContext) => Promise<unknown>>> = handlers;
    for (const [op, handler] of Object.entries(byName)) {
      if (!isTunnelOp(op)) continue;
      this.handlers.set(op, (payload, ctx) => handler(parseOpRequest(op, payload) as never, ctx));
    }
  }

  /** Serves an operation outside `TUNNEL_OPS` (tests, diagnostics); its payload is not checked. */
  registerUntyped(op: string, handler: RpcHandler): void {
    if (isTunnelOp(op)) throw new Error(`${op} is a tunnel operation: serve it with serve()`);
    this.handlers.set(op, handler);
  }

  get remembered(): number {
    return this.seen.size;
  }

  handle(
    raw: unknown,
    emitProgress: (p: { rid: string; phase: string; message: string }) => void = () => undefined,
  ): Promise<RpcResponse> {
    const now = Date.now();
    let req;
    try {
      req = validateRpcRequest(raw, now);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'rpc request refused');
      return Promise.resolve({ ok: false, error: (err as RpcError).toBody() });
    }
    this.forget(now);
    const prior = this.seen.get(req.rid);
    if (prior) {
      this.log.info({ rid: req.rid, op: req.op }, 'rpc retry answered from memory');
      return prior.answer;
    }
    const answer = this.run(req.rid, req.op, req.payload, req.deadline, emitProgress);
    this.seen.set(req.rid, { at: now, answer });
    return answer;
  }

  private async run(
    rid: string,
    op: string,
    payload: unknown,
    deadline: number,
    emitProgress: (p: { rid: string; phase: string; message: string }) => void,
  ): Promise<RpcResponse> {
    const record: RequestRecord = {
      rid,
      cluster: this.cluster,
      op,
      startedAt: new Date().toISOString(),
      outcome: 'pending',
    };
    this.ring.push(record);
    const started = performance.now();
    const handler = this.handlers.get(op);
    const controller = new AbortController();
    const timer = setTimeout(
      () => {
        controller.abort();
      },
      Math.max(0, deadline - Date.now()),
    );
    try {
      if (!handler) throw new RpcError({ code: RPC_ERROR.unknownOp, message: `unknown operation ${op}` });
      const result = await handler(payload, {
        rid,
        deadline,
        signal: controller.signal,
        progress: (phase, message) => {
          emitProgress({ rid, phase, message });
        },
      });
      record.outcome = 'ok';
      return { ok: true, result };
    } catch (err) {
      record.outcome = 'error';
      record.error = (err as Error).message;
      const body =
        err instanceof RpcError
          ? err.toBody()
          : { code: RPC_ERROR.internal, message: (err as Error).message };
      return { ok: false, error: body };
    } finally {
      clearTimeout(timer);
      record.durationMs = Math.round(performance.now() - started);
      this.log.info(
        {
          rid,
          cluster: this.cluster,
          op,
          durationMs: record.durationMs,
          outcome: record.outcome,
          error: record.error,
        },
        'tunnel request',
      );
    }
  }

  private forget(now: number): void {
    for (const [rid, r] of this.seen) {
      if (now - r.at > this.opts.rememberMs || this.seen.size > this.opts.rememberMax) this.seen.delete(rid);
      else break; // insertion order = age order
    }
  }
}
