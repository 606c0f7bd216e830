import type * as k8s from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';

import { SecretStateStore, type AgentState, type SecretApi } from './state-store';

const STATE: AgentState = { keyPem: 'KEY', certPem: 'CERT', caPem: 'CA', tunnelUrl: 'https://tunnel:8443' };
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const asData = (s: AgentState): Record<string, string> => ({
  'tls.key': b64(s.keyPem),
  'tls.crt': b64(s.certPem),
  'ca.crt': b64(s.caPem),
  'tunnel-url': b64(s.tunnelUrl),
});
const apiError = (code: number): Error => Object.assign(new Error(`HTTP ${code}`), { code });

/** The few CoreV1Api calls the store makes, on one in-memory Secret. */
function fakeApi(initial?: Record<string, string>, opts: { readStatus?: number } = {}) {
  let data = initial;
  const calls: string[] = [];
  const written: k8s.V1Secret[] = [];
  const api: SecretApi = {
    readNamespacedSecret: (p: { name: string; namespace: string }) => {
      calls.push(`read ${p.namespace}/${p.name}`);
      if (opts.readStatus !== undefined) return Promise.reject(apiError(opts.readStatus));
      return data === undefined ? Promise.reject(apiError(404)) : Promise.resolve({ data });
    },
    createNamespacedSecret: (p: { namespace: string; body: k8s.V1Secret }) => {
      calls.push(`create ${p.namespace}/${p.body.metadata?.name ?? ''}`);
      if (data !== undefined) return Promise.reject(apiError(409));
      written.push(p.body);
      data = Object.fromEntries(Object.entries(p.body.stringData ?? {}).map(([k, v]) => [k, b64(v)]));
      return Promise.resolve(p.body);
    },
    replaceNamespacedSecret: (p: { name: string; namespace: string; body: k8s.V1Secret }) => {
      calls.push(`replace ${p.namespace}/${p.name}`);
      written.push(p.body);
      data = Object.fromEntries(Object.entries(p.body.stringData ?? {}).map(([k, v]) => [k, b64(v)]));
      return Promise.resolve(p.body);
    },
  };
  return {
    store: new SecretStateStore(api, 'agent-ns', 'agent-state'),
    calls,
    written,
  };
}

describe(SecretStateStore.name, () => {
  it('has no state when the Secret does not exist', async () => {
    const { store, calls } = fakeApi();
    expect(await store.load()).toBeUndefined();
    expect(calls).toEqual(['read agent-ns/agent-state']);
  });

  it('has no state when the Secret lacks a key (a half-written or foreign Secret)', async () => {
    const { 'tunnel-url': _, ...partial } = asData(STATE);
    expect(await fakeApi(partial).store.load()).toBeUndefined();
  });

  it('passes other read failures on', async () => {
    const { store } = fakeApi();
    (store as unknown as { api: { readNamespacedSecret: () => Promise<never> } }).api.readNamespacedSecret =
      () => Promise.reject(apiError(403));
    await expect(store.load()).rejects.toMatchObject({ code: 403 });
  });

  it('creates the Secret, labelled, and reads it back', async () => {
    const { store, written } = fakeApi();
    expect(await store.create(STATE)).toEqual(STATE);
    expect(written[0]?.metadata).toMatchObject({
      name: 'agent-state',
      namespace: 'agent-ns',
      labels: { 'app.kubernetes.io/name': 'periscope-agent', 'app.kubernetes.io/component': 'state' },
    });
    expect(written[0]?.stringData).toEqual({
      'tls.key': 'KEY',
      'tls.crt': 'CERT',
      'ca.crt': 'CA',
      'tunnel-url': STATE.tunnelUrl,
    });
    expect(await store.load()).toEqual(STATE);
  });

  it('never overwrites a state that appeared meanwhile: returns that one', async () => {
    const other = { ...STATE, certPem: 'OTHER' };
    const { store, written } = fakeApi(asData(other));
    expect(await store.create(STATE)).toEqual(other);
    expect(written).toEqual([]);
  });

  it('refuses to go on when the existing Secret holds no complete state', async () => {
    const { store } = fakeApi({ 'tls.key': b64('KEY') });
    await expect(store.create(STATE)).rejects.toThrow(
      'Secret agent-ns/agent-state exists but holds no complete agent state; delete it or fix it',
    );
  });

  it('replaces the certificate and key after a renewal', async () => {
    const { store, calls } = fakeApi(asData(STATE));
    await store.update({ ...STATE, keyPem: 'KEY2', certPem: 'CERT2' });
    expect(calls).toContain('replace agent-ns/agent-state');
    expect(await store.load()).toEqual({ ...STATE, keyPem: 'KEY2', certPem: 'CERT2' });
  });
});
