import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

import { abortError } from './abort';
import { auditIdHeader } from './audit-id';
import { impersonationHeaders } from './exec/exec-session';
import type { KubeAccess } from './kube-config';
import type { ImpersonationSpec } from '@periscope/protocol';

/** A failed apiserver call: its HTTP status and Status.reason, with the apiserver's message. */
export class KubeHttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'KubeHttpError';
  }

  /** the same as `status`, for callers that read @kubernetes/client-node's field name */
  get statusCode(): number {
    return this.status;
  }
}

export interface KubeCall {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** path and query, e.g. /api/v1/namespaces?limit=500 */
  path: string;
  body?: unknown;
  /** deadline of the whole call, answer included */
  timeoutMs: number;
  /** answers larger than this fail (default 8 MiB) */
  maxBytes?: number;
  impersonate?: ImpersonationSpec;
  /** what the call does, for error messages ("listing pods") */
  what: string;
  /** ends the call early (the caller's deadline), like `timeoutMs` */
  signal?: AbortSignal;
  /** the operation's request id, sent as `Audit-ID` (see audit-id.ts) */
  requestId?: string;
}

async function open(
  kc: KubeAccess,
  call: Pick<KubeCall, 'method' | 'path' | 'impersonate' | 'requestId'>,
  body: string | undefined,
): Promise<{ req: ClientRequest; response: Promise<IncomingMessage> }> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/$/, '') + call.path);
  const auditId = auditIdHeader(call.requestId); // refused before anything is sent
  const opts: Record<string, unknown> & { headers: Record<string, string | string[]> } = {
    headers: { accept: 'application/json' },
  };
  await kc.applyToHTTPSOptions(opts);
  if (call.impersonate) Object.assign(opts.headers, impersonationHeaders(call.impersonate));
  Object.assign(opts.headers, auditId);
  if (body !== undefined) {
    opts.headers['content-type'] = 'application/json';
    opts.headers['content-length'] = String(Buffer.byteLength(body));
  }
  const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { ...opts, method: call.method });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  req.end(body);
  return { req, response };
}

function statusError(what: string, status: number, text: string): KubeHttpError {
  let message = text.slice(0, 2048);
  let reason: string | undefined;
  try {
    const s = JSON.parse(text) as { message?: unknown; reason?: unknown };
    if (typeof s.message === 'string') message = s.message;
    if (typeof s.reason === 'string') reason = s.reason;
  } catch {
    // plain text
  }
  return new KubeHttpError(status, reason, `${what} failed (HTTP ${status}): ${message}`);
}

/**
 * One apiserver call with a deadline and a cap on the answer's size, as the kubeconfig's identity
 * (impersonated when asked). Resolves with the parsed JSON answer; throws KubeHttpError on an
 * HTTP error status, a plain Error on a timeout or a broken connection.
 */
export async function kubeJson<T>(kc: KubeAccess, call: KubeCall): Promise<T> {
  const maxBytes = call.maxBytes ?? 8 * 1024 * 1024;
  const body = call.body === undefined ? undefined : JSON.stringify(call.body);
  const signal = call.signal;
  if (signal?.aborted) throw abortError(signal, call.what);
  const { req, response } = await open(kc, call, body);
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    const stop = (err: Error): void => {
      req.destroy(err);
      reject(err);
    };
    timer = setTimeout(() => {
      stop(new Error(`${call.what} timed out after ${call.timeoutMs} ms`));
    }, call.timeoutMs);
    if (signal) {
      onAbort = () => {
        stop(abortError(signal, call.what));
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
  });
  try {
    const text = await Promise.race([
      deadline,
      response.then(
        (res) =>
          new Promise<{ status: number; text: string }>((resolve, reject) => {
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (c: Buffer) => {
              size += c.length;
              if (size > maxBytes) {
                res.destroy(new Error(`${call.what}: the answer is larger than ${maxBytes} bytes`));
                return;
              }
              chunks.push(c);
            });
            res.on('error', reject);
            res.on('end', () => {
              resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
            });
          }),
      ),
    ]);
    if (text.status < 200 || text.status >= 300) throw statusError(call.what, text.status, text.text);
    return (text.text === '' ? {} : JSON.parse(text.text)) as T;
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

/** One event of a watch. */
export interface KubeWatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: unknown;
}

/**
 * A watch (`path` must carry `watch=1` and `timeoutSeconds`), events handed to `onEvent` one at a
 * time. Resolves when the apiserver ends it, when `signal` aborts, or at `deadlineMs` (a watch
 * the apiserver forgot to end must not hang the caller); rejects when it cannot start or breaks.
 * A line longer than `maxLineBytes` breaks it (one namespace object is a few KiB). `onOpen` runs
 * once the apiserver has accepted the watch (before its first event).
 */
export async function kubeWatch(
  kc: KubeAccess,
  path: string,
  onEvent: (e: KubeWatchEvent) => void,
  opts: {
    deadlineMs: number;
    signal: AbortSignal;
    maxLineBytes?: number;
    what: string;
    /** the operation's request id, sent as `Audit-ID` */
    requestId?: string;
    onOpen?: () => void;
  },
): Promise<void> {
  const maxLine = opts.maxLineBytes ?? 1024 * 1024;
  const { req, response } = await open(kc, { method: 'GET', path, requestId: opts.requestId }, undefined);
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', onAbort);
      req.destroy();
      if (err) reject(err);
      else resolve();
    };
    const onAbort = (): void => {
      finish();
    };
    const timer = setTimeout(() => {
      finish();
    }, opts.deadlineMs);
    if (opts.signal.aborted) {
      finish();
      return;
    }
    opts.signal.addEventListener('abort', onAbort);
    response.then(
      (res) => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => {
            if (chunks.length < 16) chunks.push(c);
          });
          res.on('end', () => {
            finish(statusError(opts.what, status, Buffer.concat(chunks).toString('utf8')));
          });
          res.on('error', (e) => {
            finish(e);
          });
          return;
        }
        if (!settled) opts.onOpen?.();
        let pending = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          pending += chunk;
          let nl: number;
          while ((nl = pending.indexOf('\n')) >= 0) {
            const line = pending.slice(0, nl).trim();
            pending = pending.slice(nl + 1);
            if (line === '') continue;
            try {
              onEvent(JSON.parse(line) as KubeWatchEvent);
            } catch (err) {
              finish(err instanceof Error ? err : new Error(String(err)));
              return;
            }
          }
          if (pending.length > maxLine)
            finish(new Error(`${opts.what}: an event is larger than ${maxLine} bytes`));
        });
        res.on('end', () => {
          finish();
        });
        res.on('error', (e) => {
          finish(e);
        });
      },
      (err: unknown) => {
        finish(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
