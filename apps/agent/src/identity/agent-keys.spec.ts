import 'reflect-metadata';

import { X509Certificate, createHash, createPrivateKey, createPublicKey } from 'node:crypto';

import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';

import { certValidity, newKeyAndCsr, renewAt, spkiPinOfDer } from './agent-keys';
import { selfSigned } from './test-certs';

describe(newKeyAndCsr.name, () => {
  it('makes a P-256 key and a CSR for CN=<cluster> signed by that key', async () => {
    const { keyPem, csrPem } = await newKeyAndCsr('edge-1');
    const key = createPrivateKey(keyPem);
    expect(key.asymmetricKeyType).toBe('ec');
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    expect(csr.subject).toBe('CN=edge-1');
    expect(await csr.verify()).toBe(true);
    // The CSR carries the public half of exactly this key.
    const fromCsr = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
    expect(fromCsr.export({ format: 'der', type: 'spki' })).toEqual(
      createPublicKey(key).export({ format: 'der', type: 'spki' }),
    );
  });

  it('makes a new key each time', async () => {
    const a = await newKeyAndCsr('edge-1');
    const b = await newKeyAndCsr('edge-1');
    expect(a.keyPem).not.toBe(b.keyPem);
  });
});

describe('certificate times', () => {
  it('reads the validity and renews at two thirds of the lifetime', async () => {
    const notBefore = new Date('2030-01-01T00:00:00Z');
    const notAfter = new Date('2030-01-31T00:00:00Z');
    const { certPem } = await selfSigned({ notBefore, notAfter });
    expect(certValidity(certPem)).toEqual({ notBefore, notAfter });
    expect(renewAt(certPem)).toEqual(new Date('2030-01-21T00:00:00Z'));
  });
});

describe(spkiPinOfDer.name, () => {
  it('is sha256:<hex> of the certificate’s SubjectPublicKeyInfo', async () => {
    const { der } = await selfSigned();
    const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
    expect(spkiPinOfDer(der)).toBe(`sha256:${createHash('sha256').update(spki).digest('hex')}`);
    expect(spkiPinOfDer(der)).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(spkiPinOfDer((await selfSigned()).der)).not.toBe(spkiPinOfDer(der));
  });
});
