import 'reflect-metadata';

import { webcrypto, X509Certificate, createHash } from 'node:crypto';

type X509 = typeof import('@peculiar/x509');

// @peculiar/x509 costs ≈ 2.5 MiB of heap for as long as the process lives, and it is only needed
// to make a CSR (first registration, renewal): an agent restarted with a valid certificate never
// loads it (docs/benchmarks.md, "Where the memory goes").
let x509: Promise<X509> | undefined;
function loadX509(): Promise<X509> {
  x509 ??= import('@peculiar/x509').then((m) => {
    m.cryptoProvider.set(webcrypto as unknown as Parameters<X509['cryptoProvider']['set']>[0]);
    return m;
  });
  return x509;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A fresh ECDSA P-256 key (PKCS#8 PEM) and a CSR for `CN=<cluster>`; the key never leaves the agent. */
export async function newKeyAndCsr(cluster: string): Promise<{ keyPem: string; csrPem: string }> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const { Pkcs10CertificateRequestGenerator } = await loadX509();
  const csr = await Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cluster}`,
    keys,
    signingAlgorithm: ALG,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${(pkcs8.match(/.{1,64}/g) ?? []).join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { keyPem, csrPem: csr.toString('pem') };
}

export function certValidity(certPem: string): { notBefore: Date; notAfter: Date } {
  const c = new X509Certificate(certPem);
  return { notBefore: new Date(c.validFrom), notAfter: new Date(c.validTo) };
}

/** SPKI pin (`sha256:<hex>`) of a certificate given as DER. */
export function spkiPinOfDer(der: Buffer): string {
  const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

/** Renew when two thirds of the certificate's lifetime have passed. */
export function renewAt(certPem: string): Date {
  const { notBefore, notAfter } = certValidity(certPem);
  return new Date(notBefore.getTime() + ((notAfter.getTime() - notBefore.getTime()) * 2) / 3);
}
