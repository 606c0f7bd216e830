import { randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { LoginSealer } from './login-cookie';

const login = { state: 's-1', nonce: 'n-1', codeVerifier: 'v'.repeat(43), returnTo: '/clusters/a?b=1' };

describe(LoginSealer.name, () => {
  it('opens what it sealed, until it expires; the value reveals nothing', () => {
    let t = 1_000;
    const sealer = new LoginSealer(600_000, () => t);
    const value = sealer.seal(login);
    expect(value).toMatch(/^[\w-]+$/);
    expect(Buffer.from(value, 'base64url').toString('latin1')).not.toContain('s-1');
    expect(sealer.open(value)).toEqual({ ok: true, login });
    t += 600_000;
    expect(sealer.open(value)).toEqual({ ok: false, reason: 'expired' });
  });

  it('refuses altered, truncated, foreign and junk values', () => {
    const sealer = new LoginSealer(600_000);
    const value = sealer.seal(login);
    const raw = Buffer.from(value, 'base64url');
    for (const at of [0, 12, raw.length - 17, raw.length - 1]) {
      const altered = Buffer.from(raw);
      altered[at] = (altered[at] ?? 0) ^ 1;
      expect(sealer.open(altered.toString('base64url')), `byte ${at}`).toEqual({
        ok: false,
        reason: 'invalid',
      });
    }
    expect(sealer.open(value.slice(0, -4)).ok).toBe(false);
    expect(new LoginSealer(600_000, Date.now, randomBytes(32)).open(value)).toEqual({
      ok: false,
      reason: 'invalid',
    });
    for (const junk of ['x', '', 'a'.repeat(5000), 'not base64!', undefined])
      expect(sealer.open(junk).ok, String(junk)).toBe(false);
    expect(sealer.open(undefined)).toEqual({ ok: false, reason: 'missing' });
  });
});
