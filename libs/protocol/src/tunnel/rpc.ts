/**
 * Control plane of the tunnel: request/response operations the server sends to an agent as
 * Socket.IO events with an acknowledgement. Every request carries a server-chosen request id
 * (`rid`) and a deadline; every answer is either a result or a typed error. Requests and replies
 * are DTO classes checked on arrival (`TUNNEL_OPS` in contract.ts, `validateRpcRequest`).
 */

import {
  Allow,
  ArrayMaxSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsNumber,
  IsString,
  Length,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateIf,
} from 'class-validator';

import { checkDto } from '../validation/validate';
import {
  Deduplicated,
  IsMap,
  IsText,
  Nested,
  NestedList,
  OptionalField,
  WIRE_PATTERN,
  ACCESS_TIERS,
} from '../validation/rules';
import type { Channel } from './frames';
import type { StreamResumeState } from './mux';
import type { RequestRecord } from './ring';

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
  /** the agent's answer does not have the shape its operation declares */
  badReply: 'E_BAD_REPLY',
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

/** The envelope of a request; the payload is checked against its operation's DTO. */
export class RpcRequest {
  @Matches(RID, { message: '$property must be 8 to 64 letters, digits or dashes' }) rid!: string;
  @Matches(OP, { message: '$property must be an operation name' }) op!: string;
  /** absolute deadline, epoch milliseconds */
  @IsNumber({ allowNaN: false, allowInfinity: false }) deadline!: number;
  @Allow() payload: unknown;
}

/** Checks the envelope of an incoming request; the dispatcher checks the payload. */
export function validateRpcRequest(value: unknown, now: number): RpcRequest {
  const r = checkDto(RpcRequest, value, 'lenient');
  if (!r.ok)
    throw new RpcError({ code: RPC_ERROR.badRequest, message: `rpc request: ${r.problems.join('; ')}` });
  if (r.value.deadline <= now)
    throw new RpcError({ code: RPC_ERROR.deadline, message: 'deadline already passed' });
  return r.value;
}

class RpcErrorBodyDto implements RpcErrorBody {
  @IsIn(Object.values(RPC_ERROR)) code!: RpcErrorCode;
  @IsString() @MaxLength(65_536) message!: string;
  @OptionalField() @IsInt() status?: number;
  @OptionalField() @IsString() @MaxLength(4096) reason?: string;
}

/** The envelope of an answer: `{ok: true, result}` or `{ok: false, error: {code, message}}`. */
export class RpcResponseDto {
  @IsBoolean() ok!: boolean;
  @Allow() result: unknown;
  @ValidateIf((o: { ok?: unknown }) => o.ok === false) @Nested(() => RpcErrorBodyDto) error?: RpcErrorBodyDto;
}

/**
 * The result of an agent's answer to `op`, or its error as an RpcError; an answer outside the
 * envelope is an E_BAD_REPLY error, never a TypeError further on. The result itself is checked by
 * the caller against the operation's reply DTO.
 */
export function rpcResult(answer: unknown, op: string): unknown {
  const r = checkDto(RpcResponseDto, answer, 'lenient');
  if (!r.ok)
    throw new RpcError({
      code: RPC_ERROR.badReply,
      message: `the agent answered ${op} with a malformed reply`,
    });
  if (r.value.ok) return r.value.result;
  const e = r.value.error;
  if (!e)
    throw new RpcError({
      code: RPC_ERROR.badReply,
      message: `the agent answered ${op} with a malformed reply`,
    });
  throw new RpcError({
    code: e.code,
    message: e.message.slice(0, 4096),
    ...(e.status !== undefined ? { status: e.status } : {}),
    ...(e.reason !== undefined ? { reason: e.reason.slice(0, 256) } : {}),
  });
}

/** Operations of the tunnel itself; their request and reply DTOs are in `TUNNEL_OPS`. */
export const RPC_OP = {
  ping: 'ping',
  hello: 'hello',
  resume: 'resume',
  /** the server takes over streams another server opened (re-homing a session after a replica died) */
  adopt: 'stream.adopt',
  recentRequest: 'diag.request',
} as const;
export type RpcOp = (typeof RPC_OP)[keyof typeof RPC_OP];

/** The agent's cluster-shell settings, as its chart has them. */
export class ClusterShellInfo {
  @IsBoolean({ message: '$property must be true or false' }) enabled!: boolean;
  @IsArray() @ArrayMaxSize(5) @IsIn(ACCESS_TIERS, { each: true }) tiers!: string[];
  @Matches(WIRE_PATTERN.dnsLabel, { message: '$property must be a namespace name' }) namespace!: string;
}

/**
 * Sent by the agent right after connecting (as the result of `hello`). The fields newer agents
 * add are optional, so older agents still connect: without `clusterShell` the cluster shell is
 * off on that cluster; without `namespace` / `protectedNamespaces` only the server's own list
 * protects namespaces there.
 */
export class AgentHello {
  @IsText(63) cluster!: string;
  @IsText(128) version!: string;
  /** absent from agents that predate the cluster shell: the shell is then off on that cluster */
  @OptionalField() @Nested(() => ClusterShellInfo) clusterShell?: ClusterShellInfo;
  /** when the agent's client certificate expires (ISO) */
  @IsText(64) certNotAfter!: string;
  /** the namespace the agent runs in (absent from agents that predate it) */
  @OptionalField()
  @Matches(WIRE_PATTERN.dnsLabel, { message: '$property must be a namespace name' })
  namespace?: string;
  /**
   * Namespaces only the admin tier may touch on this cluster: the agent's own, the shell
   * namespace, and its chart's protectedNamespaces (absent from agents that predate it).
   */
  @OptionalField()
  @Deduplicated()
  @IsArray({ message: '$property must be a list of at most 64 namespace names' })
  @ArrayMaxSize(64, { message: '$property must be a list of at most 64 namespace names' })
  @Matches(WIRE_PATTERN.dnsLabel, {
    each: true,
    message: '$property must be a list of at most 64 namespace names',
  })
  protectedNamespaces?: string[];
}

/** One stream's position, as each end sends it at resume. */
export class StreamResumeStateDto implements StreamResumeState {
  @IsInt() @Min(0) @Max(0xffffffff) streamId!: number;
  @IsString() @MaxLength(253) sessionId!: string;
  /** next offset expected per incoming channel */
  @IsMap({
    maxKeys: 256,
    key: (k) => /^[0-9]{1,3}$/.test(k),
    value: (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0,
    what: 'channels to offsets',
  })
  rx!: Partial<Record<Channel, number>>;
  /** agent side: the first stdout offset it can send again (re-homing; mux.ts) */
  @OptionalField() @IsInt() @Min(0) outFrom?: number;
  /** agent side: the next stdout offset it will send */
  @OptionalField() @IsInt() @Min(0) outTo?: number;
  /** agent side: stdin bytes its sink consumed */
  @OptionalField() @IsInt() @Min(0) inConsumed?: number;
}

/** The server's `resume`: its stream offsets and its settings for this connection. */
export class ResumeRequest {
  @NestedList(() => StreamResumeStateDto, 4096) streams!: StreamResumeState[];
  /** the server takes DATA frames as header + payload */
  @OptionalField() @IsBoolean() splitData?: boolean;
  /** the server's grace period for a cut (the agent keeps its streams as long) */
  @OptionalField() @IsInt() @Min(1) @Max(86_400) graceSeconds?: number;
  /** the server's longest cluster-shell session (the agent's sweep uses it while disconnected) */
  @OptionalField() @IsInt() @Min(10) @Max(604_800) maxSessionSeconds?: number;
  /**
   * The server takes over streams it does not know (another replica opened them and died): the
   * agent keeps them as orphans for `stream.adopt` instead of resetting them.
   */
  @OptionalField() @IsBoolean() adopts?: boolean;
  /** the server's resume buffer per session: the output the agent keeps per stream for a take-over */
  @OptionalField() @IsInt() @Min(0) @Max(64 * 1024 * 1024) retainBytes?: number;
}

/** One stream the server takes over, and the stdout offset it wants from. */
export class AdoptStream {
  @IsInt() @Min(0) @Max(0xffffffff) streamId!: number;
  @IsString() @MaxLength(253) sessionId!: string;
  @IsInt() @Min(0) from!: number;
}

/** `stream.adopt`: streams the agent kept as orphans that this server now holds. */
export class AdoptRequest {
  @NestedList(() => AdoptStream, 256) streams!: AdoptStream[];
}

export class AdoptOutcome {
  @IsInt() @Min(0) @Max(0xffffffff) streamId!: number;
  /** why the stream could not be taken over (it is reset); absent when it was */
  @OptionalField() @IsString() @MaxLength(1024) error?: string;
}

export class AdoptReply {
  @NestedList(() => AdoptOutcome, 256) streams!: AdoptOutcome[];
}

/**
 * Result of `resume`: the agent's stream offsets, and whether it takes DATA frames as header +
 * payload. Each side sends split frames only when the other offered them, so old and new ends
 * still talk.
 */
export class ResumeResult {
  @NestedList(() => StreamResumeStateDto, 4096) streams!: StreamResumeState[];
  @OptionalField() @IsBoolean() splitData?: boolean;
}

export class PingReply {
  /** the agent's clock, epoch milliseconds */
  @IsNumber({ allowNaN: false, allowInfinity: false }) at!: number;
}

/** `diag.request`: the agent's record of one request id (answered null when it has none). */
export class RecentRequestQuery {
  @IsString() @MaxLength(128) rid!: string;
}

export class RequestRecordDto implements RequestRecord {
  @IsString() @MaxLength(128) rid!: string;
  @IsString() @MaxLength(253) cluster!: string;
  @IsString() @MaxLength(64) op!: string;
  @OptionalField() @IsInt() @Min(0) streamId?: number;
  @IsString() @MaxLength(64) startedAt!: string;
  @OptionalField() @IsNumber({ allowNaN: false, allowInfinity: false }) @Min(0) durationMs?: number;
  @IsIn(['ok', 'error', 'pending']) outcome!: 'ok' | 'error' | 'pending';
  @OptionalField() @IsString() @MaxLength(65_536) error?: string;
  @OptionalField() @IsInt() @Min(0) bytesIn?: number;
  @OptionalField() @IsInt() @Min(0) bytesOut?: number;
}

/** agent → server while a request runs (`PROGRESS_EVENT`). */
export class ProgressEvent {
  @Matches(RID, { message: '$property must be a request id' }) rid!: string;
  @IsString() @MaxLength(1024) phase!: string;
  @IsString() @MaxLength(16_384) message!: string;
}

/** agent → server (`RENEW_EVENT`): a CSR for the agent's next certificate. */
export class RenewRequest {
  @IsString() @Length(1, 16_384) csr!: string;
}

/** server → agent: the answer to `RENEW_EVENT`. */
export class RenewReply {
  @IsBoolean() ok!: boolean;
  @ValidateIf((o: RenewReply) => o.ok) @IsString() @Length(1, 65_536) certificate?: string;
  @OptionalField() @IsString() @MaxLength(4096) error?: string;
}
