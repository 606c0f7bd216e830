/**
 * The tunnel's control-plane contract in one place: for every operation the server may ask of an
 * agent, the DTO class of its request and of its reply. The server's `AgentLink.request` and the
 * agent's dispatcher are typed by this map, and both ends check what arrives against it: a bad
 * request is refused with E_RPC_BAD_REQUEST before its handler runs, a bad reply fails the
 * request with E_BAD_REPLY. Messages name the operation and the field.
 */
import { checkDto, type DtoClass } from '../validation/validate';
import {
  CLUSTER_OP,
  ClusterCaReply,
  NoPayload,
  OkReply,
  PodListReply,
  PodListRequest,
  PodReadFileReply,
  PodReadFileRequest,
  ShellProvisionRequest,
  ShellReapReply,
  ShellReapRequest,
  ShellTeardownRequest,
} from './ops';
import {
  AdoptReply,
  AdoptRequest,
  AgentHello,
  PingReply,
  RecentRequestQuery,
  RequestRecordDto,
  ResumeRequest,
  ResumeResult,
  RPC_ERROR,
  RPC_OP,
  RpcError,
} from './rpc';

interface OpContract<Req extends object, Rep extends object, Nullable extends boolean> {
  request: DtoClass<Req>;
  reply: DtoClass<Rep>;
  /** the reply may be null (nothing found) */
  replyNullable: Nullable;
}

function op<Req extends object, Rep extends object>(
  request: DtoClass<Req>,
  reply: DtoClass<Rep>,
): OpContract<Req, Rep, false>;
function op<Req extends object, Rep extends object>(
  request: DtoClass<Req>,
  reply: DtoClass<Rep>,
  nullable: { replyNullable: true },
): OpContract<Req, Rep, true>;
function op<Req extends object, Rep extends object>(
  request: DtoClass<Req>,
  reply: DtoClass<Rep>,
  nullable?: { replyNullable: true },
): OpContract<Req, Rep, boolean> {
  return { request, reply, replyNullable: nullable?.replyNullable === true };
}

/** Every tunnel operation: request DTO → reply DTO. */
export const TUNNEL_OPS = {
  [RPC_OP.ping]: op(NoPayload, PingReply),
  [RPC_OP.hello]: op(NoPayload, AgentHello),
  [RPC_OP.resume]: op(ResumeRequest, ResumeResult),
  [RPC_OP.adopt]: op(AdoptRequest, AdoptReply),
  [RPC_OP.recentRequest]: op(RecentRequestQuery, RequestRecordDto, { replyNullable: true }),
  [CLUSTER_OP.ca]: op(NoPayload, ClusterCaReply),
  [CLUSTER_OP.provision]: op(ShellProvisionRequest, OkReply),
  [CLUSTER_OP.teardown]: op(ShellTeardownRequest, OkReply),
  [CLUSTER_OP.reap]: op(ShellReapRequest, ShellReapReply),
  [CLUSTER_OP.readFile]: op(PodReadFileRequest, PodReadFileReply),
  [CLUSTER_OP.listPods]: op(PodListRequest, PodListReply),
} as const;

export type TunnelOp = keyof typeof TUNNEL_OPS;

type Contract<O extends TunnelOp> = (typeof TUNNEL_OPS)[O];
type Instance<C> = C extends DtoClass<infer T> ? T : never;

/** What the server sends for `O` (`{}` for operations without parameters). */
export type OpRequest<O extends TunnelOp> = Instance<Contract<O>['request']>;

/** What the agent answers to `O`. */
export type OpReply<O extends TunnelOp> =
  Instance<Contract<O>['reply']> | (Contract<O>['replyNullable'] extends true ? null : never);

export function isTunnelOp(op: string): op is TunnelOp {
  return Object.hasOwn(TUNNEL_OPS, op);
}

/** The request's payload checked against its DTO, or E_RPC_BAD_REQUEST naming the op and field. */
export function parseOpRequest<O extends TunnelOp>(op: O, payload: unknown): OpRequest<O> {
  const c: OpContract<object, object, boolean> = TUNNEL_OPS[op];
  const r = checkDto(c.request, payload ?? {}, 'lenient');
  if (!r.ok) throw new RpcError({ code: RPC_ERROR.badRequest, message: `${op}: ${r.problems.join('; ')}` });
  return r.value as OpRequest<O>;
}

/**
 * The agent's result for `op` checked against its reply DTO (unknown fields dropped: a newer
 * agent may add some), or E_BAD_REPLY naming `what` (default: the op) and the field.
 */
export function parseOpReply<O extends TunnelOp>(op: O, result: unknown, what?: string): OpReply<O> {
  const c: OpContract<object, object, boolean> = TUNNEL_OPS[op];
  if (result === null && c.replyNullable) return null as OpReply<O>;
  const r = checkDto(c.reply, result, 'lenient');
  if (!r.ok)
    throw new RpcError({
      code: RPC_ERROR.badReply,
      message: `${what ?? `the agent's reply to ${op}`}: ${r.problems.join('; ')}`,
    });
  return r.value as OpReply<O>;
}
