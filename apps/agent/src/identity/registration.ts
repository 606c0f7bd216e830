import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { connect, type PeerCertificate } from 'node:tls';

import { spkiPinOfDer } from './agent-keys';

export class RegistrationError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
    this.name = 'RegistrationError';
  }
}

/**
 * With an SPKI pin, first learn the server's certificate chain without trusting it, find the
 * certificate whose public key matches the pin, and then make the real call trusting only that
 * certificate (kubeadm-style discovery for self-signed servers).
 */
async function pinnedCa(url: URL, pin: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      {
        host: url.hostname,
        port: Number(url.port || 443),
        servername: url.hostname,
        rejectUnauthorized: false,
      },
      () => {
        let cert: PeerCertificate | undefined = socket.getPeerCertificate(true);
        const seen = new Set<string>();
        while (cert && Object.keys(cert).length > 0 && !seen.has(cert.fingerprint256)) {
          seen.add(cert.fingerprint256);
          if (spkiPinOfDer(cert.raw) === pin) {
            const b64 = cert.raw.toString('base64');
            socket.end();
            resolve(
              `-----BEGIN CERTIFICATE-----\n${(b64.match(/.{1,64}/g) ?? []).join('\n')}\n-----END CERTIFICATE-----\n`,
            );
            return;
          }
          cert = (cert as PeerCertificate & { issuerCertificate?: PeerCertificate }).issuerCertificate;
        }
        socket.end();
        reject(new RegistrationError(`no certificate presented by ${url.host} matches the pin ${pin}`, true));
      },
    );
    socket.on('error', (err: Error) => {
      reject(new RegistrationError(`cannot reach ${url.host}: ${err.message}`, false));
    });
  });
}

export interface RegistrationResult {
  certificate: string;
  caBundle: string;
  tunnelUrl: string;
}

/** POST /api/agents/register. A 401 is permanent (the token is burnt); network errors are not. */
export async function register(
  baseUrl: string,
  body: { token: string; cluster: string; csr: string },
  pin?: string,
): Promise<RegistrationResult> {
  const url = new URL('/api/agents/register', baseUrl);
  const ca = pin !== undefined && url.protocol === 'https:' ? await pinnedCa(url, pin) : undefined;
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const opts = {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      timeout: 30_000,
      ...(ca !== undefined ? { ca } : {}),
    };
    const req = (url.protocol === 'https:' ? request : httpRequest)(url, opts, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        if (res.statusCode === 200) {
          try {
            const r = JSON.parse(text) as RegistrationResult;
            if (
              typeof r.certificate === 'string' &&
              typeof r.caBundle === 'string' &&
              typeof r.tunnelUrl === 'string'
            ) {
              resolve(r);
              return;
            }
          } catch {
            // fall through
          }
          reject(new RegistrationError('the server answered registration with an unexpected body', false));
        } else if (res.statusCode === 401) {
          reject(
            new RegistrationError(
              'registration rejected: the token is wrong, expired, already used, or for another cluster; mint a new one (POST /api/agents/tokens)',
              true,
            ),
          );
        } else {
          reject(new RegistrationError(`registration failed with HTTP ${res.statusCode ?? 0}`, false));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => {
      reject(new RegistrationError(`cannot reach ${url.host}: ${err.message}`, false));
    });
    req.end(payload);
  });
}
