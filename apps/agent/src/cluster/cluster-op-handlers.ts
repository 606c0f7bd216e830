import { ProvisionError, type ClusterGateway } from '@periscope/cluster-ops';
import {
  CLUSTER_OP,
  RPC_ERROR,
  RpcError,
  parsePodList,
  parsePodReadFile,
  parseShellProvision,
  parseShellReap,
  parseShellTeardown,
} from '@periscope/protocol';

import type { RpcDispatcher } from '../tunnel/rpc-dispatcher';

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

/** The cluster operations this agent serves over the tunnel, within what its chart enabled. */
export function registerClusterOps(rpc: RpcDispatcher, gateway: ClusterGateway, shell: ShellPolicy): void {
  const wrap =
    <T>(fn: (payload: unknown, progress: (phase: string, message: string) => void) => Promise<T>) =>
    async (payload: unknown, ctx: { progress: (phase: string, message: string) => void }): Promise<T> => {
      try {
        return await fn(payload, ctx.progress);
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
  rpc.register(
    CLUSTER_OP.ca,
    wrap(() => gateway.clusterCa()),
  );
  rpc.register(
    CLUSTER_OP.provision,
    wrap(async (p, progress) => {
      const req = parseShellProvision(p);
      allowShell(req.namespace, req.tier);
      await gateway.provisionShell(req, progress);
      return { ok: true };
    }),
  );
  rpc.register(
    CLUSTER_OP.teardown,
    wrap(async (p) => {
      const req = parseShellTeardown(p);
      allowShell(req.namespace);
      await gateway.teardownShell(req);
      return { ok: true };
    }),
  );
  rpc.register(
    CLUSTER_OP.reap,
    wrap(async (p) => {
      const req = parseShellReap(p);
      allowShell(req.namespace);
      return { removed: await gateway.reapShells(req) };
    }),
  );
  rpc.register(
    CLUSTER_OP.readFile,
    wrap((p) => gateway.readPodFile(parsePodReadFile(p))),
  );
  rpc.register(
    CLUSTER_OP.listPods,
    wrap(async (p) => ({ pods: await gateway.listPods(parsePodList(p)) })),
  );
}
