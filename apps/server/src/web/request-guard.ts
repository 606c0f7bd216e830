import { isIP } from 'node:net';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';

import { ERROR_CODE } from '@periscope/protocol';

import { DomainError, HTTP_STATUS } from '../common/domain-error';

/** Who the server is, as browsers see it: the public URL and the extra allowed origins. */
export interface BrowserPolicy {
  publicUrl: string;
  /** every allowed origin, the public URL's included */
  allowedOrigins: readonly string[];
}

/**
 * The Content-Security-Policy of every answer. xterm.js writes its own `<style>` elements, hence
 * `'unsafe-inline'` for styles only; scripts come from the server's own files and nothing else.
 * `connect-src 'self'` covers the same-origin API and the terminal WebSockets.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers on every answer of the public listener (API, SPA, errors). */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

const HOST_HEADER = /^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::\d{1,5})?$/i;

/** The host name of a Host header (`name:port`, `[v6]:port`), lower case; undefined if malformed. */
export function hostName(host: string | undefined): string | undefined {
  if (host === undefined || host.length > 300) return undefined;
  const m = HOST_HEADER.exec(host);
  return m?.[1]?.toLowerCase();
}

function originHost(origin: string): string | undefined {
  try {
    return new URL(origin).host.toLowerCase();
  } catch {
    return undefined;
  }
}

/**
 * Whether a Host header may be served: the public URL's host, an allowed origin's host, or a name
 * no DNS rebinding can produce (an IP address, `localhost`). A rebinding page has its attacker's
 * own name in Host, so it is refused even when that name resolves to this server's address.
 */
export function hostAllowed(host: string | undefined, policy: BrowserPolicy): boolean {
  const name = hostName(host);
  if (name === undefined) return false;
  const bare = name.startsWith('[') ? name.slice(1, -1) : name;
  if (isIP(bare) !== 0 || bare === 'localhost') return true;
  return policy.allowedOrigins.some((o) => {
    try {
      return new URL(o).hostname.toLowerCase() === name;
    } catch {
      return false;
    }
  });
}

/** Refusal of a Host header, or undefined when it is fine. */
export function checkHost(host: string | undefined, policy: BrowserPolicy): DomainError | undefined {
  if (hostAllowed(host, policy)) return undefined;
  return new DomainError(
    ERROR_CODE.misdirected,
    `this server does not answer for host ${JSON.stringify((host ?? '').slice(0, 100))}; open ${policy.publicUrl} (PERISCOPE_PUBLIC_URL), or add the address to PERISCOPE_ALLOWED_ORIGINS`,
  );
}

/**
 * Whether an `Origin` is this server's: an allowed origin, or the same host as the request (so a
 * page served from this very address may call its own API).
 */
export function originAllowed(origin: string, host: string | undefined, policy: BrowserPolicy): boolean {
  if (policy.allowedOrigins.includes(origin)) return true;
  const h = originHost(origin);
  return h !== undefined && host !== undefined && h === host.toLowerCase();
}

/**
 * The browser-side checks of a state-changing request (POST, PUT, PATCH, DELETE):
 * - a cross-site caller is refused (403 E_CSRF): an `Origin` that is not this server's, or,
 *   without one, a `Sec-Fetch-Site` other than same-origin / none. Callers that are not browsers
 *   (agents, curl) send neither and pass;
 * - a body must be JSON (415 E_UNSUPPORTED_MEDIA_TYPE): HTML forms can post only
 *   urlencoded, multipart or text bodies, and cannot set `Content-Type: application/json` across
 *   sites without a CORS preflight, which this server never grants.
 */
export function checkStateChange(
  method: string | undefined,
  headers: IncomingHttpHeaders,
  policy: BrowserPolicy,
): DomainError | undefined {
  if (!STATE_CHANGING.has((method ?? '').toUpperCase())) return undefined;
  const origin = headers.origin;
  if (origin !== undefined) {
    if (!originAllowed(origin, headers.host, policy))
      return new DomainError(
        ERROR_CODE.csrf,
        `cross-site request refused: origin ${JSON.stringify(origin.slice(0, 100))} is not ${policy.publicUrl} (PERISCOPE_PUBLIC_URL) or one of PERISCOPE_ALLOWED_ORIGINS`,
      );
  } else {
    const site = headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none')
      return new DomainError(
        ERROR_CODE.csrf,
        `cross-site request refused (Sec-Fetch-Site: ${site.slice(0, 20)}); use Periscope from ${policy.publicUrl}`,
      );
  }
  const length = headers['content-length'];
  const hasBody = headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  if (hasBody && !JSON_TYPE.test(headers['content-type'] ?? ''))
    return new DomainError(
      ERROR_CODE.unsupportedMediaType,
      `send the request body as application/json (got ${JSON.stringify((headers['content-type'] ?? 'no content type').slice(0, 60))})`,
    );
  return undefined;
}

/** The status and body of a refusal, as every other error of the API. */
function send(res: ServerResponse, err: DomainError): void {
  const body = JSON.stringify({ error: err.code, message: err.message });
  res.statusCode = HTTP_STATUS[err.code];
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

/**
 * Middleware in front of everything on the public listener (API, SPA files, health): security
 * headers on every answer, then the Host check, then the state-change checks.
 */
export function browserGuard(
  policy: BrowserPolicy,
  onRefused: (err: DomainError, req: IncomingMessage) => void,
): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  return (req, res, next) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    const err = checkHost(req.headers.host, policy) ?? checkStateChange(req.method, req.headers, policy);
    if (err) {
      onRefused(err, req);
      send(res, err);
      return;
    }
    next();
  };
}
