/**
 * Control plane of the tunnel: request/response operations the server sends to an agent as
 * Socket.IO events with an acknowledgement. Every request carries a server-chosen request id
 * (`rid`) and a deadline; every answer is either a result or a typed error. Payloads are checked
 * by the receiving side before use (see `validateRpcRequest`).
 */

import type { StreamResumeState } from './mux';

export const RPC_EVENT = 'rpc';
export const DATA_EVENT = 'f';
/** agent → server: `{csr}` over the authenticated tunnel, answered `{ok, certificate}` */
export const RENEW_EVENT = 'renew';
/** agent → server while a request runs: `{rid, phase, message}` (e.g. shell provisioning steps) */
export const PROGRESS_EVENT = 'progress';

export const RPC_ERROR = {
  badRequest: 'E_RPC_BAD_REQUEST',
  unknownOp: 'E_RPC_UNKNOWN_OP',
  deadline: 'E_RPC_DEADLINE',
  disconnected: 'E_RPC_DISCONNECTED',
  busy: 'E_RPC_BUSY',
  kubernetes: 'E_KUBERNETES',
  internal: 'E_RPC_INTERNAL',
} as const;
export type RpcErrorCode = (typeof RPC_ERROR)[keyof typeof RPC_ERROR];

/** An error that crosses the tunnel; Kubernetes API status and message are preserved. */
export interface RpcErrorBody {
  code: RpcErrorCode;
  message: string;
  /** HTTP status of the Kubernetes API call, when the failure came from the apiserver */
  status?: number;
  /** Kubernetes Status.reason (NotFound, Forbidden, AlreadyExists, …) */
  reason?: string;
}

export interface RpcRequest {
  rid: string;
  op: string;
  /** absolute deadline, epoch milliseconds */
  deadline: number;
  payload: unknown;
}

export type RpcResponse = { ok: true; result: unknown } | { ok: false; error: RpcErrorBody };

export class RpcError extends Error {
  readonly code: RpcErrorCode;
  readonly status: number | undefined;
  readonly reason: string | undefined;

  constructor(body: RpcErrorBody) {
    super(body.message);
    this.name = 'RpcError';
    this.code = body.code;
    this.status = body.status;
    this.reason = body.reason;
  }

  toBody(): RpcErrorBody {
    return {
      code: this.code,
      message: this.message,
      ...(this.status !== undefined ? { status: this.status } : {}),
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
    };
  }
}

const RID = /^[0-9A-Za-z-]{8,64}$/;
const OP = /^[a-z][A-Za-z0-9.]{0,63}$/;

/** Checks the envelope of an incoming request; the op handler validates the payload. */
export function validateRpcRequest(value: unknown, now: number): RpcRequest {
  if (value === null || typeof value !== 'object')
    throw new RpcError({ code: RPC_ERROR.badRequest, message: 'request is not an object' });
  const v = value as Record<string, unknown>;
  const { rid, op, deadline } = v;
  if (typeof rid !== 'string' || !RID.test(rid))
    throw new RpcError({ code: RPC_ERROR.badRequest, message: 'bad rid' });
  if (typeof op !== 'string' || !OP.test(op))
    throw new RpcError({ code: RPC_ERROR.badRequest, message: 'bad op' });
  if (typeof deadline !== 'number' || !Number.isFinite(deadline))
    throw new RpcError({ code: RPC_ERROR.badRequest, message: 'bad deadline' });
  if (deadline <= now) throw new RpcError({ code: RPC_ERROR.deadline, message: 'deadline already passed' });
  return { rid, op, deadline, payload: v['payload'] };
}

/** Operations both ends know. Payload and result shapes live next to their handlers. */
export const RPC_OP = {
  ping: 'ping',
  hello: 'hello',
  resume: 'resume',
  recentRequest: 'diag.request',
} as const;
export type RpcOp = (typeof RPC_OP)[keyof typeof RPC_OP];

/** Sent by the agent right after connecting (as the result of `hello`). */
export interface AgentHello {
  cluster: string;
  version: string;
  clusterShell: { enabled: boolean; tiers: string[]; namespace: string };
  /** when the agent's client certificate expires (ISO) */
  certNotAfter: string;
}

/**
 * Result of `resume` (its request is `{streams, splitData?}` from the server): the agent's
 * stream offsets, and whether it takes DATA frames as header + payload. Each side sends split
 * frames only when the other offered them, so old and new ends still talk.
 */
export interface ResumeResult {
  streams: StreamResumeState[];
  splitData?: boolean;
}
