import { ProvisionError, type ClusterGateway } from '@periscope/cluster-ops/dist/lean';
import { CLUSTER_OP, RPC_ERROR, RpcError, type ClusterOp } from '@periscope/protocol';

import type { OpHandlers, RpcContext, RpcDispatcher } from '../tunnel/rpc-dispatcher';

export interface ShellPolicy {
  enabled: boolean;
  tiers: string[];
  namespace: string;
}

function asRpcError(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  if (err instanceof ProvisionError) {
    return new RpcError({
      code: RPC_ERROR.kubernetes,
      message: err.message,
      ...(err.status !== undefined ? { status: err.status } : {}),
      reason: err.phase,
    });
  }
  const e = err as { code?: unknown; statusCode?: unknown; message?: string };
  const status =
    typeof e.statusCode === 'number' ? e.statusCode : typeof e.code === 'number' ? e.code : undefined;
  return new RpcError({
    code: status !== undefined ? RPC_ERROR.kubernetes : RPC_ERROR.internal,
    message: e.message ?? String(err),
    ...(status !== undefined ? { status } : {}),
  });
}

/**
 * The cluster operations this agent serves over the tunnel, within what its chart enabled. The
 * dispatcher has checked each payload against its DTO; each request's deadline (`ctx.signal`)
 * reaches the Kubernetes calls.
 */
export function clusterOpHandlers(gateway: ClusterGateway, shell: ShellPolicy): OpHandlers<ClusterOp> {
  const wrap =
    <Req, Rep>(fn: (req: Req, ctx: RpcContext) => Promise<Rep>) =>
    async (req: Req, ctx: RpcContext): Promise<Rep> => {
      try {
        return await fn(req, ctx);
      } catch (err) {
        throw asRpcError(err);
      }
    };
  const allowShell = (namespace: string, tier?: string): void => {
    if (!shell.enabled)
      throw new RpcError({
        code: RPC_ERROR.kubernetes,
        status: 403,
        reason: 'Forbidden',
        message:
          "cluster shell is not enabled on this cluster's agent (set clusterShell.enabled=true in the periscope-agent chart)",
      });
    if (namespace !== shell.namespace)
      throw new RpcError({
        code: RPC_ERROR.kubernetes,
        status: 403,
        reason: 'Forbidden',
        message: `this agent provisions shells only in namespace ${shell.namespace}`,
      });
    if (tier !== undefined && !shell.tiers.includes(tier))
      throw new RpcError({
        code: RPC_ERROR.kubernetes,
        status: 403,
        reason: 'Forbidden',
        message: `tier ${tier} is not in this agent's clusterShell.tiers (${shell.tiers.join(', ')})`,
      });
  };
  return {
    [CLUSTER_OP.ca]: wrap((_req, { signal }) => gateway.clusterCa({ signal })),
    // The request id (checked by the dispatcher: letters, digits, dashes) is each operation's
    // Audit-ID at the apiserver, so the cluster's audit log joins this request by it.
    [CLUSTER_OP.provision]: wrap(async (req, { signal, rid, progress }) => {
      allowShell(req.namespace, req.tier);
      await gateway.provisionShell(req, progress, { signal, requestId: rid });
      return { ok: true as const };
    }),
    [CLUSTER_OP.teardown]: wrap(async (req, { signal, rid }) => {
      allowShell(req.namespace);
      await gateway.teardownShell(req, { signal, requestId: rid });
      return { ok: true as const };
    }),
    [CLUSTER_OP.reap]: wrap(async (req, { signal, rid }) => {
      allowShell(req.namespace);
      return { removed: await gateway.reapShells(req, { signal, requestId: rid }) };
    }),
    [CLUSTER_OP.readFile]: wrap((req, { signal, rid }) =>
      gateway.readPodFile(req, { signal, requestId: rid }),
    ),
    [CLUSTER_OP.listPods]: wrap(async (req, { signal, rid }) => ({
      pods: await gateway.listPods(req, { signal, requestId: rid }),
    })),
  };
}

/** Serves the cluster operations on the agent's dispatcher. */
export function registerClusterOps(rpc: RpcDispatcher, gateway: ClusterGateway, shell: ShellPolicy): void {
  rpc.serve(clusterOpHandlers(gateway, shell));
}
