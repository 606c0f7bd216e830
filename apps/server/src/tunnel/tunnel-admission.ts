import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

import type { CertVerdict, PresentedCert } from '../agents/agent-identities';
import { TokenBucket } from './token-bucket';

/** Which certificate may serve a cluster (AgentCertificates): checked at every connect. */
export interface TunnelIdentityCheck {
  verdict(cluster: string, cert: PresentedCert): Promise<CertVerdict>;
  isCurrent(cluster: string, fingerprint: string | undefined): boolean;
}

/** What every refused agent connection is told, whatever the reason (the server logs the reason). */
export const AGENT_REFUSED_BODY = JSON.stringify({ error: 'E_AUTH', message: 'agent connection refused' });

export type AdmissionRefusal =
  | 'no_certificate'
  | 'bad_chain'
  | 'not_client_auth'
  | 'unknown_cluster'
  | 'revoked'
  | 'not_current'
  | 'rate_limited'
  | 'error';

export type AdmissionVerdict =
  { cluster: string; cert: PresentedCert } | { refused: AdmissionRefusal; detail: string };

export interface TunnelAdmissionOptions {
  /** is `cluster` registered with `backend: agent`? */
  isAgentCluster: (cluster: string) => boolean;
  admissionsPerSecond: number;
  admissionBurst: number;
  /** the one current certificate per cluster; without it any valid certificate of the CA serves */
  identity?: TunnelIdentityCheck;
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/**
 * Who may open the tunnel: a TLS client certificate issued by the agent CA for clientAuth, naming
 * an agent cluster in its CN, current for that cluster, within the admission rate.
 */
export class TunnelAdmission {
  private readonly bucket: TokenBucket;

  constructor(private readonly options: TunnelAdmissionOptions) {
    this.bucket = new TokenBucket(options.admissionsPerSecond, options.admissionBurst);
  }

  /** The certificate checks, before the WebSocket upgrade; returns the agent's cluster or why not. */
  admit(req: IncomingMessage): AdmissionVerdict {
    const tls = req.socket as TLSSocket;
    const cert = tls.getPeerCertificate(false);
    if (Object.keys(cert).length === 0)
      return { refused: 'no_certificate', detail: 'client presented no certificate' };
    if (!tls.authorized) return { refused: 'bad_chain', detail: String(tls.authorizationError) };
    if (!(cert.ext_key_usage ?? []).includes(CLIENT_AUTH))
      return { refused: 'not_client_auth', detail: 'certificate lacks clientAuth' };
    const cn = cert.subject.CN;
    const cluster = Array.isArray(cn) ? undefined : cn;
    if (cluster === undefined || !this.options.isAgentCluster(cluster)) {
      return {
        refused: 'unknown_cluster',
        detail: `no agent cluster named ${JSON.stringify(cn)} is registered`,
      };
    }
    if (!this.bucket.take())
      return { refused: 'rate_limited', detail: 'too many agent connections per second' };
    return {
      cluster,
      cert: {
        fingerprint: cert.fingerprint256.replace(/:/g, '').toLowerCase(),
        serial: cert.serialNumber.replace(/:/g, '').toLowerCase(),
        notAfter: new Date(cert.valid_to).toISOString(),
      },
    };
  }

  /** admit() plus the identity check: is this the cluster's current certificate? */
  async check(req: IncomingMessage): Promise<AdmissionVerdict> {
    const verdict = this.admit(req);
    const identity = this.options.identity;
    if ('refused' in verdict || !identity) return verdict;
    try {
      const v = await identity.verdict(verdict.cluster, verdict.cert);
      if (v === 'current') return verdict;
      return {
        refused: v,
        detail:
          v === 'revoked'
            ? `the agent of ${verdict.cluster} was revoked; it must register again with a new token`
            : `certificate ${verdict.cert.serial} is not the current one of ${verdict.cluster} (superseded by a registration or renewal)`,
      };
    } catch (err) {
      return { refused: 'error', detail: `checking the certificate failed: ${(err as Error).message}` };
    }
  }
}

/** The raw HTTP answer to a refused upgrade: one uniform 401, or 429 / 503 for "retry later". */
export function refusalResponse(refused: AdmissionRefusal): string {
  const [status, text, body] =
    refused === 'rate_limited'
      ? [
          429,
          'Too Many Requests',
          JSON.stringify({ error: 'E_RATE_LIMIT', message: 'too many agent connections; retry later' }),
        ]
      : refused === 'error'
        ? [503, 'Service Unavailable', JSON.stringify({ error: 'E_UNAVAILABLE', message: 'retry later' })]
        : [401, 'Unauthorized', AGENT_REFUSED_BODY];
  return `HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}
