import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The header a replica puts on a request it forwards to another: `v1;<replica>;<ms>;<hmac>`, the
 * HMAC-SHA256 (key PERISCOPE_REPLICA_SECRET, hex) of the version, the sending replica's id, the
 * time in epoch milliseconds, the method and the path with its query. The owner verifies it before
 * anything it carries (X-Forwarded-For) is believed, and never forwards a verified request again.
 */
export const REPLICA_HEADER = 'x-periscope-replica';
/** A signature older (or further in the future) than this is refused: a replayed request. */
export const SIGNATURE_MAX_AGE_MS = 30_000;
/** Header values longer than this are not parsed at all. */
const MAX_HEADER_CHARS = 400;
const REPLICA_ID = /^[A-Za-z0-9._-]{1,100}$/;

function mac(secret: string, replica: string, at: number, method: string, path: string): string {
  return createHmac('sha256', secret)
    .update(['v1', replica, String(at), method.toUpperCase(), path].join('\n'))
    .digest('hex');
}

/** The header value for a request `method path` forwarded by `replica` at `now`. */
export function signForward(
  secret: string,
  replica: string,
  method: string,
  path: string,
  now = Date.now(),
): string {
  return `v1;${replica};${now};${mac(secret, replica, now, method, path)}`;
}

export type SignatureCheck =
  { ok: true; replica: string } | { ok: false; reason: 'malformed' | 'expired' | 'forged' };

/** Checks a header value against the request it came with: malformed, expired, forged, or whose. */
export function verifyForward(
  secret: string,
  header: string | string[] | undefined,
  method: string,
  path: string,
  now = Date.now(),
): SignatureCheck {
  if (typeof header !== 'string' || header.length > MAX_HEADER_CHARS)
    return { ok: false, reason: 'malformed' };
  const parts = header.split(';');
  if (parts.length !== 4 || parts[0] !== 'v1') return { ok: false, reason: 'malformed' };
  const [, replica = '', atText = '', given = ''] = parts;
  if (!REPLICA_ID.test(replica) || !/^\d{1,15}$/.test(atText) || !/^[0-9a-f]{64}$/.test(given))
    return { ok: false, reason: 'malformed' };
  const at = Number(atText);
  const expected = Buffer.from(mac(secret, replica, at, method, path), 'hex');
  if (!timingSafeEqual(expected, Buffer.from(given, 'hex'))) return { ok: false, reason: 'forged' };
  // After the MAC: an old signature of ours is a replay, told apart from a forgery in the log.
  if (Math.abs(now - at) > SIGNATURE_MAX_AGE_MS) return { ok: false, reason: 'expired' };
  return { ok: true, replica };
}
