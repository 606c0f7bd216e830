import * as k8s from '@kubernetes/client-node';

/** Options of a cluster operation. */
export interface CallOptions {
  /** the caller's deadline (e.g. an agent request's): aborting it stops the operation's Kubernetes calls */
  signal?: AbortSignal | undefined;
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

const fetchLibrary = new k8s.IsomorphicFetchHttpLibrary();

/**
 * Per-call options for a @kubernetes/client-node API call that make its HTTP request abort with
 * `signal` (the library hands the request context's signal to fetch); undefined without one.
 */
export function kubeCallOptions(signal: AbortSignal | undefined): k8s.ConfigurationOptions | undefined {
  if (!signal) return undefined;
  return {
    httpApi: {
      send: (request) => {
        request.setSignal(signal);
        return fetchLibrary.send(request);
      },
    },
  };
}
