import 'reflect-metadata';

import { webcrypto, X509Certificate } from 'node:crypto';

import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';

import { AgentCa, CsrError, spkiPin, type AgentCaStore, type CaMaterial } from './agent-ca';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

class MemoryStore implements AgentCaStore {
  saved: CaMaterial | undefined;
  saves = 0;
  load(): Promise<CaMaterial | undefined> {
    return Promise.resolve(this.saved);
  }
  saveIfAbsent(m: CaMaterial): Promise<CaMaterial> {
    this.saves++;
    this.saved ??= m;
    return Promise.resolve(this.saved);
  }
}

async function csr(cn: string, alg: webcrypto.EcKeyGenParams = ALG): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const req = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cn}`,
    keys,
    signingAlgorithm: { ...alg, hash: 'SHA-256' },
  });
  return req.toString('pem');
}

describe(AgentCa.name, () => {
  it('is created once and then loaded from its store', async () => {
    const store = new MemoryStore();
    const a = await AgentCa.loadOrCreate(store);
    const b = await AgentCa.loadOrCreate(store);
    expect(store.saves).toBe(1);
    expect(b.certPem).toBe(a.certPem);
    const cert = new X509Certificate(a.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  it('signs a CSR as a 90-day clientAuth certificate whose CN is forced to the cluster', async () => {
    const ca = await AgentCa.loadOrCreate(new MemoryStore());
    const pem = await ca.signAgentCsr(await csr('something-else'), 'edge-1');
    const cert = new X509Certificate(pem);
    expect(cert.subject).toBe('CN=edge-1');
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.ca).toBe(false);
    const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89);
    expect(days).toBeLessThan(91);
    expect(cert.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
  });

  it('refuses garbage, a non-P-256 key and a CSR whose signature does not verify', async () => {
    const ca = await AgentCa.loadOrCreate(new MemoryStore());
    await expect(ca.signAgentCsr('not a csr', 'edge-1')).rejects.toThrow(CsrError);
    await expect(
      ca.signAgentCsr(await csr('x', { name: 'ECDSA', namedCurve: 'P-384' }), 'edge-1'),
    ).rejects.toThrow(/P-256/);
    const good = await csr('x');
    const der = Buffer.from(good.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0xff; // corrupt the signature
    const bad = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(ca.signAgentCsr(bad, 'edge-1')).rejects.toThrow(CsrError);
  });

  it('computes SPKI pins in the agent format', async () => {
    const ca = await AgentCa.loadOrCreate(new MemoryStore());
    expect(spkiPin(ca.certPem)).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});
