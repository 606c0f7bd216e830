import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/** A 32-byte key for one purpose (`info`) from the shared PERISCOPE_SESSION_KEY. */
export function deriveKey(sessionKey: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', sessionKey, Buffer.alloc(0), info, 32));
}

/** What the callback needs to finish a sign-in started by GET /api/auth/login. */
export interface PendingLogin {
  state: string;
  nonce: string;
  codeVerifier: string;
  returnTo: string;
}

export type OpenedLogin =
  { ok: true; login: PendingLogin } | { ok: false; reason: 'missing' | 'invalid' | 'expired' };

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const AAD = Buffer.from('periscope-login-v1');
/** A sealed sign-in is about 300 bytes; anything far larger is not ours. */
const MAX_COOKIE_CHARS = 4096;

/**
 * Sign-ins in flight, kept by the browser instead of the server: state, nonce, PKCE verifier,
 * return path and expiry, sealed with AES-256-GCM under a key only this process knows. Strangers
 * can start as many sign-ins as they like without taking anything from anyone (there is no table
 * to fill), the browser cannot read or alter the sealed values, and the callback checks that its
 * `state` is the one sealed in this browser's cookie. A server restart (new key) voids sign-ins
 * in flight, as it voids the sessions themselves.
 */
export class LoginSealer {
  private readonly key: Buffer;

  constructor(
    readonly ttlMs: number,
    private readonly now: () => number = () => Date.now(),
    key: Buffer = randomBytes(32),
  ) {
    if (key.length !== 32) throw new Error('the sign-in cookie key must be 32 bytes');
    this.key = key;
  }

  /** The cookie value (base64url) of a new pending sign-in. */
  seal(login: PendingLogin): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(AAD);
    const plain = Buffer.from(
      JSON.stringify({
        v: VERSION,
        s: login.state,
        n: login.nonce,
        c: login.codeVerifier,
        r: login.returnTo,
        e: this.now() + this.ttlMs,
      }),
    );
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url');
  }

  /** The pending sign-in sealed in a cookie value, or why there is none. */
  open(value: string | undefined): OpenedLogin {
    if (value === undefined || value === '') return { ok: false, reason: 'missing' };
    if (value.length > MAX_COOKIE_CHARS || !/^[\w-]+$/.test(value)) return { ok: false, reason: 'invalid' };
    const raw = Buffer.from(value, 'base64url');
    if (raw.length < IV_BYTES + TAG_BYTES + 2) return { ok: false, reason: 'invalid' };
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, IV_BYTES));
      decipher.setAAD(AAD);
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      plain = Buffer.concat([
        decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      return { ok: false, reason: 'invalid' };
    }
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(plain.toString('utf8')) as Record<string, unknown>;
    } catch {
      return { ok: false, reason: 'invalid' };
    }
    const { v, s, n, c, r, e } = o;
    if (
      v !== VERSION ||
      typeof s !== 'string' ||
      typeof n !== 'string' ||
      typeof c !== 'string' ||
      typeof r !== 'string' ||
      typeof e !== 'number'
    )
      return { ok: false, reason: 'invalid' };
    if (e <= this.now()) return { ok: false, reason: 'expired' };
    return { ok: true, login: { state: s, nonce: n, codeVerifier: c, returnTo: r } };
  }
}
