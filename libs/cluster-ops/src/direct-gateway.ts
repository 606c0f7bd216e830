import {
  newRid,
  type PodListRequest,
  type PodReadFileRequest,
  type PodSummary,
  type ShellProvisionRequest,
  type ShellReapRequest,
  type ShellTeardownRequest,
} from '@periscope/protocol';

import { abortable, abortError, type CallOptions } from './abort';
import { discoverClusterCa, type CaSource } from './cluster-ca';
import { ExecSession, type ExecResult, type ExecTarget } from './exec/exec-session';
import type { KubeAccess } from './kube-config';
import {
  READ_FILE_TIMEOUT_MS,
  type ClusterGateway,
  type ExecChannel,
  type ExecChannelHandlers,
  type PhaseListener,
} from './gateway';
import { listPods } from './pods';
import { checkShellAccess, type ShellAccessResult } from './shell/shell-access';
import { ShellProvisioner, type ProvisionInput } from './shell/shell-provisioner';
import { TokenRotations } from './shell/token-rotations';

/** The shell image's program that reads the command log safely (docker/shell-image.json). */
const READ_AUDIT_PROGRAM = '/usr/local/bin/periscope-shell';
/** read-audit's exit code for "no command log" (EX_NOINPUT). */
const READ_AUDIT_MISSING = 66;

/** Runs cluster operations with a KubeConfig: the server for direct backends, the agent locally. */
export class DirectGateway implements ClusterGateway {
  private readonly provisioner: ShellProvisioner;
  /** live sessions whose token must be renewed (the apiserver capped its lifetime) */
  private readonly inputs = new Map<string, ProvisionInput>();
  readonly rotations: TokenRotations;
  private ca: Promise<{ caPem: string; server: string; source: CaSource }> | undefined;

  constructor(
    private readonly kc: KubeAccess,
    private readonly opts: {
      preferClusterInfo: boolean;
      saCaPath?: string;
      log?: (o: Record<string, unknown>, message: string) => void;
      /**
       * The apiserver URL written into session kubeconfigs instead of the one found with the CA
       * (the caller's own may be a bastion or 127.0.0.1 that pods cannot reach).
       */
      inClusterServer?: string;
    },
  ) {
    this.provisioner = new ShellProvisioner(kc, { log: opts.log });
    this.rotations = new TokenRotations((sessionId) => {
      const input = this.inputs.get(sessionId);
      if (!input) return Promise.reject(Object.assign(new Error('session gone'), { code: 404 }));
      // A rotation is an operation of its own: its request id is the Audit-ID of its calls.
      const requestId = newRid();
      opts.log?.({ sessionId, rid: requestId }, 'rotating the session token');
      return this.provisioner.rotateToken(input, { requestId });
    }, opts.log);
  }

  /**
   * Cached after the first success; a failure is retried next time. The discovery is shared by
   * concurrent callers, so an aborted caller only stops waiting for it.
   */
  clusterCa(opts: CallOptions = {}): Promise<{ caPem: string; server: string; source: CaSource }> {
    this.ca ??= discoverClusterCa(this.kc, this.opts).catch((err: unknown) => {
      this.ca = undefined;
      throw err;
    });
    return abortable(this.ca, opts.signal, 'finding the cluster CA');
  }

  async provisionShell(
    req: ShellProvisionRequest,
    onPhase?: PhaseListener,
    opts: CallOptions = {},
  ): Promise<void> {
    const ca = await this.clusterCa(opts);
    const { caPem } = ca;
    const server = this.opts.inClusterServer ?? ca.server;
    // A request DTO holds data fields only: nothing of its prototype is lost.
    // eslint-disable-next-line @typescript-eslint/no-misused-spread
    const input = { ...req, server, caPem };
    const neededUntil = Date.now() + req.tokenSeconds * 1000;
    const { tokenExpiresAt } = await this.provisioner.provision(input, onPhase, opts);
    this.inputs.set(req.sessionId, input);
    if (!this.rotations.track(req.sessionId, tokenExpiresAt, neededUntil)) this.inputs.delete(req.sessionId);
  }

  teardownShell(req: ShellTeardownRequest, opts: CallOptions = {}): Promise<void> {
    this.rotations.cancel(req.sessionId);
    this.inputs.delete(req.sessionId);
    return this.provisioner.teardown(req.namespace, req.sessionId, opts);
  }

  reapShells(req: ShellReapRequest, opts: CallOptions = {}): Promise<string[]> {
    const live = new Set(req.liveSessionIds);
    return this.provisioner.reap(req.namespace, (sid) => live.has(sid), req.graceMs, Date.now(), opts);
  }

  /**
   * Reads up to `maxBytes` of the shell's command log in its pod, through the image's
   * `periscope-shell read-audit`, which refuses anything but a regular file at exactly that path
   * and cannot block (see apps/shell/src/shell/read-audit.ts). The whole read, exec included, has
   * a deadline (`timeoutMs`, default 10 s): past it the exec is closed and the read fails, so a
   * process in the pod that never answers cannot hold up a teardown. A missing log reads as empty.
   * An aborted `opts.signal` ends the read the same way.
   */
  async readPodFile(
    req: PodReadFileRequest,
    opts: CallOptions = {},
  ): Promise<{ content: string; truncated: boolean }> {
    const signal = opts.signal;
    const timeoutMs = req.timeoutMs ?? READ_FILE_TIMEOUT_MS;
    const where = `${req.path} in ${req.namespace}/${req.pod}`;
    const out: Buffer[] = [];
    let size = 0;
    let errText = '';
    let session: ExecSession | undefined;
    let gaveUp = false;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const result = await new Promise<ExecResult>((resolve, reject) => {
      const giveUp = (err: Error): void => {
        gaveUp = true;
        session?.close();
        reject(err);
      };
      timer = setTimeout(() => {
        giveUp(new Error(`reading ${where} took longer than ${timeoutMs} ms; gave up`));
      }, timeoutMs);
      if (signal) {
        onAbort = () => {
          giveUp(abortError(signal, `reading ${where}`));
        };
        if (signal.aborted) {
          onAbort();
          return;
        }
        signal.addEventListener('abort', onAbort, { once: true });
      }
      ExecSession.open(
        this.kc,
        {
          namespace: req.namespace,
          pod: req.pod,
          container: req.container,
          command: [READ_AUDIT_PROGRAM, 'read-audit', req.path, String(req.maxBytes + 1)],
          tty: false,
          stdin: false,
          auditId: opts.requestId,
        },
        {
          onOutput: (channel, bytes) => {
            if (channel === 1) {
              // read-audit prints at most maxBytes + 1; anything beyond is not kept.
              if (size <= req.maxBytes) out.push(bytes);
              size += bytes.length;
            } else if (errText.length < 1024) errText += bytes.toString('utf8');
            return true;
          },
          onExit: resolve,
        },
      ).then((s) => {
        session = s;
        if (gaveUp) s.close(); // the deadline passed while the exec was opening
      }, reject);
    }).finally(() => {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    });
    if (result.exitCode === READ_AUDIT_MISSING) return { content: '', truncated: false };
    if (result.exitCode !== 0) {
      const why = errText.trim().replace(/^periscope-shell: read-audit: /, '');
      throw new Error(
        `cannot read ${where}: ${why !== '' ? why.slice(0, 512) : (result.message ?? `exit ${String(result.exitCode)}`)}`,
      );
    }
    const all = Buffer.concat(out);
    return { content: all.subarray(0, req.maxBytes).toString('utf8'), truncated: size > req.maxBytes };
  }

  listPods(req: PodListRequest, opts: CallOptions = {}): Promise<PodSummary[]> {
    return listPods(this.kc, req, opts.signal, opts.requestId);
  }

  checkShellAccess(
    req: { namespace: string; tiers: readonly string[] },
    opts: CallOptions = {},
  ): Promise<ShellAccessResult> {
    return checkShellAccess(this.kc, req, opts);
  }

  async openExec(target: ExecTarget, handlers: ExecChannelHandlers): Promise<ExecChannel> {
    const session = await ExecSession.open(this.kc, target, {
      onOutput: (ch, b) => handlers.onOutput(ch, b),
      onExit: (r) => {
        handlers.onExit(r);
      },
      onWritable: () => {
        handlers.onWritable?.();
      },
    });
    if (target.tty && target.cols !== undefined && target.rows !== undefined)
      session.resize(target.cols, target.rows);
    return {
      protocol: session.protocol,
      write: (b) => session.write(b),
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
