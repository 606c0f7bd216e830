import type {
  PodListRequest,
  PodReadFileRequest,
  PodSummary,
  ShellProvisionRequest,
  ShellReapRequest,
  ShellTeardownRequest,
} from '@periscope/protocol';

import type { CallOptions } from './abort';
import type { CaSource } from './cluster-ca';
import type { ExecResult, ExecTarget } from './exec/exec-session';
import type { ShellAccessResult } from './shell/shell-access';
import type { ProvisionPhase } from './shell/shell-provisioner';

/** How long a teardown's read of the in-pod command log may take, exec included, by default. */
export const READ_FILE_TIMEOUT_MS = 10_000;

/** A running exec, whichever way the cluster is reached. */
export interface ExecChannel {
  readonly protocol: string;
  /**
   * Sends stdin (the bytes are always taken). Answers false when the exec side is full (the
   * apiserver exec socket, or the tunnel stream's window): stop the source until
   * `handlers.onWritable()`, as a kubelet stops reading when the container's stdin is full.
   */
  write(bytes: Uint8Array): boolean;
  /** half-closes stdin */
  end(): void;
  resize(cols: number, rows: number): void;
  /** call after `onOutput` returned false, once the consumer has room again */
  resume(): void;
  close(): void;
}

export interface ExecChannelHandlers {
  /** return false to stop output until `resume()` */
  onOutput(channel: 1 | 2, bytes: Uint8Array): boolean;
  onExit(result: ExecResult): void;
  /** the exec ended abnormally (tunnel lost, reset, connection closed) */
  onError(message: string): void;
  /** after `write()` answered false: the exec side has room for stdin again */
  onWritable?(): void;
}

export type PhaseListener = (phase: ProvisionPhase, message: string) => void;

/**
 * The one seam for reaching a cluster. The server uses a direct implementation (DirectGateway,
 * direct-gateway.ts) for in-cluster, kubeconfig and eks backends and an agent implementation
 * (over the tunnel) for agent backends; the agent serves its tunnel with the direct one. Callers
 * never branch on the backend. `opts.signal` ends the operation's Kubernetes calls when the
 * caller stops waiting (an implementation may also ignore it). `opts.requestId` is the operation's
 * request id: every apiserver call it makes sends it as `Audit-ID`, and over the tunnel it is the
 * request's id, so server, agent and the cluster's audit log share it (audit-id.ts).
 */
export interface ClusterGateway {
  clusterCa(opts?: CallOptions): Promise<{ caPem: string; server: string; source: CaSource }>;
  provisionShell(req: ShellProvisionRequest, onPhase?: PhaseListener, opts?: CallOptions): Promise<void>;
  teardownShell(req: ShellTeardownRequest, opts?: CallOptions): Promise<void>;
  reapShells(req: ShellReapRequest, opts?: CallOptions): Promise<string[]>;
  readPodFile(req: PodReadFileRequest, opts?: CallOptions): Promise<{ content: string; truncated: boolean }>;
  /** an exec lives until closed or exited; close it to stop it early */
  openExec(target: ExecTarget, handlers: ExecChannelHandlers): Promise<ExecChannel>;
  /** pods visible to the (impersonated) identity; errors carry the apiserver status as `status` */
  listPods(req: PodListRequest, opts?: CallOptions): Promise<PodSummary[]>;
  /**
   * The provisioner's rights for cluster-shell sessions (shell/shell-access.ts). Direct gateways
   * only: an agent installs its own RBAC with its chart and reports its shell in its hello.
   */
  checkShellAccess?(
    req: { namespace: string; tiers: readonly string[] },
    opts?: CallOptions,
  ): Promise<ShellAccessResult>;
}
