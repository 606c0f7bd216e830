import type * as k8s from '@kubernetes/client-node';

import { auditIdHeader } from './audit-id';
import { clientNode } from './kube-config';

/** Options of a cluster operation. */
export interface CallOptions {
  /** the caller's deadline (e.g. an agent request's): aborting it stops the operation's Kubernetes calls */
  signal?: AbortSignal | undefined;
  /**
   * the operation's request id (the tunnel request's, or one the server made): every apiserver
   * call of the operation sends it as `Audit-ID` (see audit-id.ts)
   */
  requestId?: string | undefined;
}

/** The error an aborted operation fails with (the signal's reason when it is an Error). */
export function abortError(signal: AbortSignal, what: string): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name !== 'AbortError') return reason;
  return Object.assign(new Error(`${what} was aborted (its deadline passed)`), { name: 'AbortError' });
}

/**
 * `p`, or a rejection as soon as `signal` aborts: for calls that cannot take a signal themselves.
 * The call itself goes on; only the wait for it ends.
 */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(abortError(signal, what));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(abortError(signal, what));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => {
      signal.removeEventListener('abort', onAbort);
    });
  });
}

/** made on first use: loading client-node here would load it for every user of this module */
let fetchLibrary: k8s.IsomorphicFetchHttpLibrary | undefined;

/**
 * Per-call options for a @kubernetes/client-node API call: its HTTP request aborts with
 * `call.signal` (the library hands the request context's signal to fetch) and carries
 * `call.requestId` as the `Audit-ID` header; undefined with neither. Throws on a request id that
 * is not one (see `auditIdHeader`).
 */
export function kubeCallOptions(call: CallOptions = {}): k8s.ConfigurationOptions | undefined {
  const { signal } = call;
  const headers = Object.entries(auditIdHeader(call.requestId));
  if (!signal && headers.length === 0) return undefined;
  return {
    httpApi: {
      send: (request) => {
        if (signal) request.setSignal(signal);
        for (const [name, value] of headers) request.setHeaderParam(name, value);
        fetchLibrary ??= new (clientNode().IsomorphicFetchHttpLibrary)();
        return fetchLibrary.send(request);
      },
    },
  };
}
