import * as k8s from '@kubernetes/client-node';
import type {
  PodListRequest,
  PodReadFileRequest,
  PodSummary,
  ShellProvisionRequest,
  ShellReapRequest,
  ShellTeardownRequest,
} from '@periscope/protocol';

import { discoverClusterCa, type CaSource } from './cluster-ca';
import { ExecSession, type ExecResult, type ExecTarget } from './exec/exec-session';
import { listPods } from './pods';
import { ShellProvisioner, type ProvisionInput, type ProvisionPhase } from './shell/shell-provisioner';
import { TokenRotations } from './shell/token-rotations';

/** A running exec, whichever way the cluster is reached. */
export interface ExecChannel {
  readonly protocol: string;
  /** sends stdin; `done` once the bytes have left toward the apiserver */
  write(bytes: Uint8Array, done: () => void): void;
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
}

export type PhaseListener = (phase: ProvisionPhase, message: string) => void;

/**
 * The one seam for reaching a cluster. The server uses a direct implementation for in-cluster,
 * kubeconfig and eks backends and an agent implementation (over the tunnel) for agent backends;
 * callers never branch on the backend.
 */
export interface ClusterGateway {
  clusterCa(): Promise<{ caPem: string; server: string; source: CaSource }>;
  provisionShell(req: ShellProvisionRequest, onPhase?: PhaseListener): Promise<void>;
  teardownShell(req: ShellTeardownRequest): Promise<void>;
  reapShells(req: ShellReapRequest): Promise<string[]>;
  readPodFile(req: PodReadFileRequest): Promise<{ content: string; truncated: boolean }>;
  openExec(target: ExecTarget, handlers: ExecChannelHandlers): Promise<ExecChannel>;
  /** pods visible to the (impersonated) identity; errors carry the apiserver status as `status` */
  listPods(req: PodListRequest): Promise<PodSummary[]>;
}

/** Runs cluster operations with a KubeConfig: the server for direct backends, the agent locally. */
export class DirectGateway implements ClusterGateway {
  private readonly provisioner: ShellProvisioner;
  /** live sessions whose token must be renewed (the apiserver capped its lifetime) */
  private readonly inputs = new Map<string, ProvisionInput>();
  readonly rotations: TokenRotations;
  private ca: Promise<{ caPem: string; server: string; source: CaSource }> | undefined;

  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly opts: {
      preferClusterInfo: boolean;
      saCaPath?: string;
      log?: (o: Record<string, unknown>, message: string) => void;
    },
  ) {
    this.provisioner = new ShellProvisioner(kc);
    this.rotations = new TokenRotations((sessionId) => {
      const input = this.inputs.get(sessionId);
      if (!input) return Promise.reject(Object.assign(new Error('session gone'), { code: 404 }));
      return this.provisioner.rotateToken(input);
    }, opts.log);
  }

  /** Cached after the first success; a failure is retried next time. */
  clusterCa(): Promise<{ caPem: string; server: string; source: CaSource }> {
    this.ca ??= discoverClusterCa(this.kc, this.opts).catch((err: unknown) => {
      this.ca = undefined;
      throw err;
    });
    return this.ca;
  }

  async provisionShell(req: ShellProvisionRequest, onPhase?: PhaseListener): Promise<void> {
    const { caPem, server } = await this.clusterCa();
    const input = { ...req, server, caPem };
    const neededUntil = Date.now() + req.tokenSeconds * 1000;
    const { tokenExpiresAt } = await this.provisioner.provision(input, onPhase);
    this.inputs.set(req.sessionId, input);
    if (!this.rotations.track(req.sessionId, tokenExpiresAt, neededUntil)) this.inputs.delete(req.sessionId);
  }

  teardownShell(req: ShellTeardownRequest): Promise<void> {
    this.rotations.cancel(req.sessionId);
    this.inputs.delete(req.sessionId);
    return this.provisioner.teardown(req.namespace, req.sessionId);
  }

  reapShells(req: ShellReapRequest): Promise<string[]> {
    const live = new Set(req.liveSessionIds);
    return this.provisioner.reap(req.namespace, (sid) => live.has(sid), req.graceMs);
  }

  /** Reads up to `maxBytes` of a file in a container (e.g. the shell's audit file). */
  async readPodFile(req: PodReadFileRequest): Promise<{ content: string; truncated: boolean }> {
    const chunks: Buffer[] = [];
    let size = 0;
    const result = await new Promise<ExecResult>((resolve, reject) => {
      ExecSession.open(
        this.kc,
        {
          namespace: req.namespace,
          pod: req.pod,
          container: req.container,
          command: ['head', '-c', String(req.maxBytes + 1), req.path],
          tty: false,
          stdin: false,
        },
        {
          onOutput: (channel, bytes) => {
            if (channel === 1 && size <= req.maxBytes) {
              chunks.push(bytes);
              size += bytes.length;
            }
            return true;
          },
          onExit: resolve,
        },
      ).catch(reject);
    });
    if (result.exitCode !== 0)
      throw new Error(
        `cannot read ${req.path} in ${req.namespace}/${req.pod}: ${result.message ?? `exit ${String(result.exitCode)}`}`,
      );
    const all = Buffer.concat(chunks);
    return { content: all.subarray(0, req.maxBytes).toString('utf8'), truncated: all.length > req.maxBytes };
  }

  listPods(req: PodListRequest): Promise<PodSummary[]> {
    return listPods(this.kc, req);
  }

  async openExec(target: ExecTarget, handlers: ExecChannelHandlers): Promise<ExecChannel> {
    const session = await ExecSession.open(this.kc, target, {
      onOutput: (ch, b) => handlers.onOutput(ch, b),
      onExit: (r) => {
        handlers.onExit(r);
      },
    });
    if (target.tty && target.cols !== undefined && target.rows !== undefined)
      session.resize(target.cols, target.rows);
    return {
      protocol: session.protocol,
      write: (b, done) => {
        session.write(b, done);
      },
      end: () => {
        session.end();
      },
      resize: (c, r) => {
        session.resize(c, r);
      },
      resume: () => {
        session.resume();
      },
      close: () => {
        session.close();
      },
    };
  }
}
