import WebSocket from 'ws';

import { auditIdHeader } from '../audit-id';
import type { KubeAccess } from '../kube-config';

/** Who the exec runs as when not the caller's own identity (Kubernetes impersonation). */
export interface Impersonation {
  user: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

export interface ExecTarget {
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  tty: boolean;
  stdin: boolean;
  impersonate?: Impersonation;
  /** a request id, sent as the Audit-ID header so the cluster's audit log carries it (audit-id.ts) */
  auditId?: string;
  /** the Periscope session this exec belongs to (tunnel streams are keyed by it) */
  sessionId?: string;
  /** initial terminal size for a TTY */
  cols?: number;
  rows?: number;
}

export interface ExecResult {
  exitCode: number | null;
  status: 'Success' | 'Failure';
  message?: string;
}

export interface ExecHandlers {
  /** output bytes; return false to pause the exec until `resume()` */
  onOutput(channel: 1 | 2, bytes: Buffer): boolean;
  onExit(result: ExecResult): void;
  /** after `write()` answered false: stdin has room again */
  onWritable?(): void;
}

/**
 * Stdin not yet handed to the kernel (our socket buffer) above which `write()` answers false,
 * and below which `onWritable` follows. When the container does not read, the kubelet stops
 * reading its stream, the apiserver stops reading ours and this is where it would pile up.
 */
export const STDIN_HIGH_WATER = 256 * 1024;
export const STDIN_LOW_WATER = 64 * 1024;

const CH = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4, close: 255 } as const;

/** Header names as Kubernetes expects them; extra keys are percent-encoded like client-go does. */
export function impersonationHeaders(imp: Impersonation): Record<string, string | string[]> {
  const h: Record<string, string | string[]> = { 'Impersonate-User': imp.user };
  if (imp.groups.length > 0) h['Impersonate-Group'] = imp.groups;
  for (const [key, values] of Object.entries(imp.extra ?? {})) {
    const encoded = key.replace(
      /[^A-Za-z0-9!#$&'*+.^_`|~-]/g,
      (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`,
    );
    h[`Impersonate-Extra-${encoded}`] = values;
  }
  return h;
}

/** Parses the status message of channel 3 into an exit code. */
export function parseExecStatus(json: string): ExecResult {
  let s: {
    status?: string;
    message?: string;
    reason?: string;
    details?: { causes?: { reason?: string; message?: string }[] };
  };
  try {
    s = JSON.parse(json) as typeof s;
  } catch {
    return { exitCode: null, status: 'Failure', message: 'unreadable exec status' };
  }
  if (s.status === 'Success') return { exitCode: 0, status: 'Success' };
  const code = s.details?.causes?.find((c) => c.reason === 'ExitCode')?.message;
  return {
    exitCode: code !== undefined && /^\d+$/.test(code) ? Number(code) : null,
    status: 'Failure',
    ...(s.message !== undefined ? { message: s.message } : {}),
  };
}

/**
 * One exec into a container over the Kubernetes WebSocket protocol (v5, falling back to v4),
 * with backpressure both ways: output pauses the socket when the consumer says so, and `write`
 * answers false while more than STDIN_HIGH_WATER of stdin waits in our socket buffer (the
 * caller stops its source until `onWritable`).
 */
export class ExecSession {
  private exited = false;
  /** stdin bytes sent but not yet handed to the kernel */
  private stdinQueued = 0;
  private wantWritable = false;
  private constructor(
    private readonly ws: WebSocket,
    private readonly handlers: ExecHandlers,
  ) {}

  get protocol(): string {
    return this.ws.protocol;
  }

  static async open(kc: KubeAccess, target: ExecTarget, handlers: ExecHandlers): Promise<ExecSession> {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    const q = new URLSearchParams({
      container: target.container,
      stdout: 'true',
      stderr: String(!target.tty),
      stdin: String(target.stdin),
      tty: String(target.tty),
    });
    for (const c of target.command) q.append('command', c);
    const url = `${cluster.server.replace(/^http/, 'ws').replace(/\/$/, '')}/api/v1/namespaces/${encodeURIComponent(target.namespace)}/pods/${encodeURIComponent(target.pod)}/exec?${q.toString()}`;
    const opts: Record<string, unknown> & { headers: Record<string, string | string[]> } = { headers: {} };
    await kc.applyToHTTPSOptions(opts);
    if (target.impersonate) Object.assign(opts.headers, impersonationHeaders(target.impersonate));
    Object.assign(opts.headers, auditIdHeader(target.auditId));
    const ws = new WebSocket(url, ['v5.channel.k8s.io', 'v4.channel.k8s.io'], {
      ...opts,
      perMessageDeflate: false,
      handshakeTimeout: 30_000,
    });
    const session = new ExecSession(ws, handlers);
    // Frames that came in the same read as the upgrade answer are emitted before this function
    // resumes (a busy process reads its socket late): listen from the start, hold them (the
    // socket is paused at once, so at most what that read held) and hand them over once the
    // caller has the session, as no handler may run before `open` resolves.
    const early: Buffer[] = [];
    let ready = false;
    ws.on('message', (data: Buffer) => {
      if (ready) session.onMessage(data);
      else {
        early.push(data);
        ws.pause();
      }
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => {
        resolve();
      });
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          let message = body;
          try {
            message = (JSON.parse(body) as { message?: string }).message ?? body;
          } catch {
            // plain text
          }
          reject(
            Object.assign(new Error(`exec refused (HTTP ${res.statusCode ?? 0}): ${message}`), {
              status: res.statusCode,
            }),
          );
        });
      });
      ws.once('error', reject);
    });
    const handOver = (): void => {
      if (ready) return;
      ready = true;
      let reading = true;
      for (const data of early.splice(0)) {
        if (session.exited) break; // the caller closed it meanwhile, or the status came
        reading = session.onMessage(data) && reading;
      }
      if (reading) ws.resume(); // after an exit status too: the close handshake needs reading
    };
    if (early.length === 0) ready = true;
    else setImmediate(handOver);
    ws.on('close', () => {
      handOver();
      session.finish({
        exitCode: null,
        status: 'Failure',
        message: 'exec connection closed without a status',
      });
    });
    ws.on('error', () => undefined);
    return session;
  }

  /** Answers false when the consumer asked to pause. */
  private onMessage(data: Buffer): boolean {
    if (data.length === 0) return true;
    const channel = data[0];
    const payload = data.subarray(1);
    if (channel === CH.stdout || channel === CH.stderr) {
      if (payload.length > 0 && !this.handlers.onOutput(channel, payload)) {
        this.ws.pause();
        return false;
      }
    } else if (channel === CH.error) {
      this.finish(parseExecStatus(payload.toString('utf8')));
    }
    return true;
  }

  private finish(result: ExecResult): void {
    if (this.exited) return;
    this.exited = true;
    this.handlers.onExit(result);
    this.ws.close();
  }

  /**
   * Sends stdin; `done` runs once the bytes left our socket buffer. Answers false when the
   * caller should stop sending until `onWritable` (the bytes are taken either way).
   */
  write(bytes: Uint8Array, done?: () => void): boolean {
    const frame = Buffer.allocUnsafe(bytes.length + 1);
    frame[0] = CH.stdin;
    frame.set(bytes, 1);
    this.stdinQueued += frame.length;
    this.ws.send(frame, () => {
      this.stdinQueued -= frame.length;
      done?.();
      if (this.wantWritable && this.stdinQueued <= STDIN_LOW_WATER) {
        this.wantWritable = false;
        if (!this.exited) this.handlers.onWritable?.();
      }
    });
    if (this.stdinQueued <= STDIN_HIGH_WATER) return true;
    this.wantWritable = true;
    return false;
  }

  /** Half-closes stdin (protocol v5); on v4 there is no way to, so the caller keeps the session. */
  end(): boolean {
    if (this.ws.protocol !== 'v5.channel.k8s.io') return false;
    this.ws.send(Buffer.from([CH.close, CH.stdin]));
    return true;
  }

  resize(cols: number, rows: number): void {
    this.ws.send(
      Buffer.concat([Buffer.from([CH.resize]), Buffer.from(JSON.stringify({ Width: cols, Height: rows }))]),
    );
  }

  resume(): void {
    this.ws.resume();
  }

  close(): void {
    this.exited = true;
    this.ws.terminate();
  }
}
