import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { abortable, kubeCallOptions } from './abort';
import { kubeJson } from './kube-http';
import { listPods } from './pods';

/** An apiserver that takes every request and never answers; it notes when the caller hangs up. */
describe('aborting Kubernetes calls', () => {
  let server: Server;
  let kc: k8s.KubeConfig;
  const hungUp: string[] = [];
  const seen: string[] = [];
  /** aborted once the server has the request whose path starts with the key (so it surely started) */
  const abortOnArrival = new Map<string, AbortController>();

  beforeAll(async () => {
    server = createServer((req: IncomingMessage) => {
      const url = req.url ?? '';
      seen.push(url);
      req.socket.on('close', () => hungUp.push(url));
      for (const [prefix, c] of abortOnArrival)
        if (url.startsWith(prefix))
          setTimeout(() => {
            c.abort();
          }, 20);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: 'c',
          server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          skipTLSVerify: true,
        },
      ],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const abortOnceSeen = (prefix: string): AbortSignal => {
    const c = new AbortController();
    abortOnArrival.set(prefix, c);
    return c.signal;
  };

  it('a @kubernetes/client-node call given kubeCallOptions({ signal }) ends when the signal aborts', async () => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const started = Date.now();
    await expect(
      core.listNamespacedSecret(
        { namespace: 'shells' },
        kubeCallOptions({ signal: abortOnceSeen('/api/v1/namespaces/shells/secrets') }),
      ),
    ).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(5000);
    expect(seen).toContain('/api/v1/namespaces/shells/secrets');
    await expect.poll(() => hungUp).toContain('/api/v1/namespaces/shells/secrets');
  });

  it('kubeJson (and so listPods) ends at the signal, not at its own timeout, and closes the request', async () => {
    const started = Date.now();
    await expect(
      listPods(kc, { limit: 5, namespace: 'apps' }, abortOnceSeen('/api/v1/namespaces/apps/pods')),
    ).rejects.toThrow('listing pods was aborted (its deadline passed)');
    expect(Date.now() - started).toBeLessThan(5000);
    await expect.poll(() => hungUp.some((u) => u.startsWith('/api/v1/namespaces/apps/pods'))).toBe(true);
  });

  it('kubeJson refuses to start once the signal has aborted', async () => {
    const c = new AbortController();
    c.abort();
    const before = seen.length;
    await expect(
      kubeJson(kc, {
        method: 'GET',
        path: '/api/v1/nodes',
        timeoutMs: 30_000,
        what: 'listing nodes',
        signal: c.signal,
      }),
    ).rejects.toThrow('listing nodes was aborted');
    expect(seen).toHaveLength(before);
  });

  it('without a signal or a request id nothing changes', () => {
    expect(kubeCallOptions()).toBeUndefined();
    expect(kubeCallOptions({})).toBeUndefined();
  });
});

describe(abortable.name, () => {
  it('passes the result through, or stops waiting when the signal aborts', async () => {
    expect(await abortable(Promise.resolve(7), new AbortController().signal, 'x')).toBe(7);
    expect(await abortable(Promise.resolve(8), undefined, 'x')).toBe(8);
    const c = new AbortController();
    const never = new Promise<never>(() => undefined);
    const waiting = abortable(never, c.signal, 'finding the cluster CA');
    c.abort();
    await expect(waiting).rejects.toThrow('finding the cluster CA was aborted (its deadline passed)');
    const reason = new Error('the request was cancelled');
    await expect(abortable(never, AbortSignal.abort(reason), 'x')).rejects.toBe(reason);
  });
});
