import 'reflect-metadata';

import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';

import { AgentIdentity, type IdentityOptions } from './agent-identity';
import { RegistrationError } from './registration';
import type { AgentState, AgentStateStore } from './state-store';
import { selfSigned } from './test-certs';

function memoryStore(initial?: AgentState): AgentStateStore & { saved: AgentState[] } {
  let state = initial;
  const saved: AgentState[] = [];
  return {
    saved,
    load: () => Promise.resolve(state),
    create: (s) => {
      state ??= s;
      saved.push(s);
      return Promise.resolve(state);
    },
    update: (s) => {
      state = s;
      saved.push(s);
      return Promise.resolve();
    },
  };
}

function identity(store: AgentStateStore, opts: Partial<IdentityOptions> = {}) {
  const logs: string[] = [];
  const log = {
    info: (_o: object, m: string) => logs.push(m),
    warn: (_o: object, m: string) => logs.push(m),
    error: (_o: object, m: string) => logs.push(m),
  };
  return {
    sut: new AgentIdentity({
      cluster: 'edge-1',
      registrationUrl: 'https://127.0.0.1:1',
      store,
      log,
      ...opts,
    }),
    logs,
  };
}

describe(AgentIdentity.name, () => {
  it('loads the identity from the state Secret without registering', async () => {
    const { certPem } = await selfSigned();
    const state = { keyPem: 'KEY', certPem, caPem: 'CA', tunnelUrl: 'https://t' };
    const { sut, logs } = identity(memoryStore(state));
    expect(await sut.ensure()).toEqual(state);
    expect(sut.state).toEqual(state);
    expect(logs).toEqual(['agent identity loaded from the state Secret']);
  });

  it('without a state Secret or a token, fails permanently and says how to fix it', async () => {
    const { sut } = identity(memoryStore());
    const err = await sut.ensure().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistrationError);
    expect(err).toMatchObject({
      permanent: true,
      message: expect.stringContaining('PERISCOPE_REGISTRATION_TOKEN') as unknown,
    });
    expect(() => sut.state).toThrow('agent identity not loaded');
  });

  it('renews with a fresh key: signs a CSR for its cluster and saves the new certificate and key', async () => {
    const old = await selfSigned();
    const store = memoryStore({
      keyPem: old.keyPem,
      certPem: old.certPem,
      caPem: 'CA',
      tunnelUrl: 'https://t',
    });
    const { sut, logs } = identity(store);
    await sut.ensure();
    const next = await selfSigned();
    const csrs: string[] = [];
    await sut.renew((csr) => {
      csrs.push(csr);
      return Promise.resolve(next.certPem);
    });
    expect(new x509.Pkcs10CertificateRequest(csrs[0] ?? '').subject).toBe('CN=edge-1');
    expect(sut.state.certPem).toBe(next.certPem);
    expect(sut.state.keyPem).not.toBe(old.keyPem);
    expect(sut.state.tunnelUrl).toBe('https://t');
    expect(store.saved).toEqual([sut.state]);
    expect(logs).toContain('agent certificate renewed');
  });

  it('keeps the current identity when a renewal fails, and says it will retry', async () => {
    const old = await selfSigned();
    const state = { keyPem: old.keyPem, certPem: old.certPem, caPem: 'CA', tunnelUrl: 'https://t' };
    const store = memoryStore(state);
    const { sut, logs } = identity(store);
    await sut.ensure();
    await sut.renew(() => Promise.reject(new Error('tunnel not connected')));
    expect(sut.state).toEqual(state);
    expect(store.saved).toEqual([]);
    expect(logs).toContain('agent certificate renewal failed; will retry');
  });
});
