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
  /** absent from agents that predate the cluster shell: the shell is then off on that cluster */
  clusterShell?: { enabled: boolean; tiers: string[]; namespace: string };
  /** when the agent's client certificate expires (ISO) */
  certNotAfter: string;
  /** the namespace the agent runs in (absent from agents that predate it) */
  namespace?: string;
  /**
   * Namespaces only the admin tier may touch on this cluster: the agent's own, the shell
   * namespace, and its chart's protectedNamespaces (absent from agents that predate it).
   */
  protectedNamespaces?: string[];
}

const HELLO_DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const HELLO_TIER = /^(read|triage|write|maintain|admin)$/;

/**
 * Checks an agent's `hello` before the server uses it; throws with what is wrong. The fields
 * newer agents add are optional, so older agents still connect: without `clusterShell` the
 * cluster shell is off on that cluster; without `namespace` / `protectedNamespaces` only the
 * server's own list protects namespaces there.
 */
export function parseAgentHello(v: unknown): AgentHello {
  const fail = (what: string): never => {
    throw new RpcError({ code: RPC_ERROR.badRequest, message: `agent hello: ${what}` });
  };
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return fail('not an object');
  const o = v as Record<string, unknown>;
  const text = (k: string, max: number): string => {
    const x = o[k];
    if (typeof x !== 'string' || x.length === 0 || x.length > max)
      return fail(`${k} is missing or malformed`);
    return x;
  };
  const cs = o['clusterShell'];
  let clusterShell: AgentHello['clusterShell'];
  if (cs !== undefined) {
    if (cs === null || typeof cs !== 'object' || Array.isArray(cs))
      return fail('clusterShell must be an object');
    const { enabled, tiers, namespace: shellNs } = cs as Record<string, unknown>;
    if (typeof enabled !== 'boolean') return fail('clusterShell.enabled must be true or false');
    if (
      !Array.isArray(tiers) ||
      tiers.length > 5 ||
      tiers.some((t) => typeof t !== 'string' || !HELLO_TIER.test(t))
    )
      return fail('clusterShell.tiers must list tiers');
    if (typeof shellNs !== 'string' || !HELLO_DNS_LABEL.test(shellNs))
      return fail('clusterShell.namespace must be a namespace name');
    clusterShell = { enabled, tiers: tiers as string[], namespace: shellNs };
  }
  const ns = o['namespace'];
  if (ns !== undefined && (typeof ns !== 'string' || !HELLO_DNS_LABEL.test(ns)))
    return fail('namespace must be a namespace name');
  const pn = o['protectedNamespaces'];
  if (
    pn !== undefined &&
    (!Array.isArray(pn) ||
      pn.length > 64 ||
      pn.some((n) => typeof n !== 'string' || !HELLO_DNS_LABEL.test(n)))
  )
    return fail('protectedNamespaces must be a list of at most 64 namespace names');
  return {
    cluster: text('cluster', 63),
    version: text('version', 128),
    ...(clusterShell !== undefined ? { clusterShell } : {}),
    certNotAfter: text('certNotAfter', 64),
    ...(typeof ns === 'string' ? { namespace: ns } : {}),
    ...(pn !== undefined ? { protectedNamespaces: [...new Set(pn as string[])] } : {}),
  };
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
