import 'reflect-metadata';

import { createHash, webcrypto, X509Certificate } from 'node:crypto';

import * as x509 from '@peculiar/x509';

type CryptoKey = webcrypto.CryptoKey;

// @peculiar/x509 is typed against the DOM Crypto interface; Node's webcrypto implements it.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

/** PEM-encoded CA certificate and PKCS#8 private key of the per-deployment agent CA. */
export interface CaMaterial {
  certPem: string;
  keyPem: string;
}

/** Where the CA lives: a Kubernetes Secret or a data directory (see AgentCaStore implementations). */
export interface AgentCaStore {
  load(): Promise<CaMaterial | undefined>;
  /** Saves only when absent; returns what is stored afterwards (another replica may have won). */
  saveIfAbsent(material: CaMaterial): Promise<CaMaterial>;
}

export class CsrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CsrError';
  }
}

function pemToDer(pem: string): ArrayBuffer {
  const b64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const buf = Buffer.from(b64, 'base64');
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

function derToPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${(b64.match(/.{1,64}/g) ?? []).join('\n')}\n-----END ${label}-----\n`;
}

function randomSerial(): string {
  // Positive 16-byte serial (high bit cleared).
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

/** SPKI pin of a certificate, as agents configure it (`sha256:<hex>`). */
export function spkiPin(certPem: string): string {
  const cert = new X509Certificate(certPem);
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

/**
 * The per-deployment ECDSA P-256 CA that signs agent client certificates. Loaded from its store,
 * created on first start when absent.
 */
export class AgentCa {
  private constructor(
    readonly certPem: string,
    private readonly cert: x509.X509Certificate,
    private readonly key: CryptoKey,
  ) {}

  static async loadOrCreate(store: AgentCaStore, subject = 'CN=periscope-agent-ca'): Promise<AgentCa> {
    let material = await store.load();
    if (!material) material = await store.saveIfAbsent(await AgentCa.generate(subject));
    return AgentCa.fromMaterial(material);
  }

  static async fromMaterial(material: CaMaterial): Promise<AgentCa> {
    const cert = new x509.X509Certificate(material.certPem);
    const key = await webcrypto.subtle.importKey('pkcs8', pemToDer(material.keyPem), ALG, false, ['sign']);
    return new AgentCa(material.certPem, cert, key);
  }

  static async generate(subject: string, validityDays = 3650): Promise<CaMaterial> {
    const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + validityDays * DAY_MS),
      keys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    return { certPem: cert.toString('pem') + '\n', keyPem: derToPem(pkcs8, 'PRIVATE KEY') };
  }

  get notAfter(): Date {
    return this.cert.notAfter;
  }

  /**
   * Issues the tunnel listener's serving certificate (agents trust this CA, so no public CA is
   * needed for the mTLS port). SANs are DNS names or IP addresses.
   */
  async issueServerCert(
    sans: readonly string[],
    validityDays = 365,
  ): Promise<{ certPem: string; keyPem: string }> {
    const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
    const now = Date.now();
    const names = sans.map((n) =>
      /^[\d.]+$|:/.test(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n },
    );
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${sans[0] ?? 'periscope-tunnel'}`,
      issuer: this.cert.subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + validityDays * DAY_MS),
      signingKey: this.key,
      publicKey: keys.publicKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], true),
        new x509.SubjectAlternativeNameExtension(names),
      ],
    });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    return { certPem: cert.toString('pem') + '\n', keyPem: derToPem(pkcs8, 'PRIVATE KEY') };
  }

  /**
   * Signs an agent's CSR. The subject is forced to `CN=<cluster>` whatever the CSR asks for;
   * the certificate is for client authentication only.
   */
  async signAgentCsr(csrPem: string, cluster: string, validityDays = 90): Promise<string> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch {
      throw new CsrError('csr is not a PEM PKCS#10 certificate request');
    }
    if (!(await csr.verify())) throw new CsrError('csr signature does not verify');
    const alg = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
    if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') throw new CsrError('csr key must be ECDSA P-256');
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${cluster}`,
      issuer: this.cert.subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + validityDays * DAY_MS),
      signingKey: this.key,
      publicKey: csr.publicKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], true),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert),
      ],
    });
    return cert.toString('pem') + '\n';
  }
}
