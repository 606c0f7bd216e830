import { randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { deriveKey, LoginSealer } from './login-cookie';
import { configForLog, loadServerConfig } from '../config/server-config';
import { TokenSealer } from './redis-login-sessions';

const OIDC = `
oidc:
  issuer: https://idp.example.com
  clientID: periscope
authorization:
  mode: tier
  groupTiers: { sre: maintain }
`;
const DEV = 'dev:\n  users:\n    - { subject: alice, groups: [a] }\n';
const KEY = randomBytes(32).toString('base64');

describe('PERISCOPE_SESSION_KEY', () => {
  it('is required with Redis in oidc mode, with the recipe; not in dev mode or without Redis', () => {
    const redis = {
      PERISCOPE_REDIS_URL: 'redis://redis:6379/0',
      PERISCOPE_REPLICA_SECRET: 'r'.repeat(32),
      PERISCOPE_AUTH_FILE: '/auth.yaml',
    };
    expect(() => loadServerConfig({ ...redis, PERISCOPE_AUTH_MODE: 'oidc' }, () => OIDC)).toThrow(
      /PERISCOPE_SESSION_KEY: expected a key shared by every replica .*openssl rand -base64 32/,
    );
    expect(
      loadServerConfig({ ...redis, PERISCOPE_AUTH_MODE: 'dev' }, () => DEV).sharedState.sessionSecret,
    ).toBeUndefined();
    expect(
      loadServerConfig({ PERISCOPE_AUTH_FILE: '/auth.yaml', PERISCOPE_AUTH_MODE: 'oidc' }, () => OIDC)
        .sharedState.sessionSecret,
    ).toBeUndefined();
  });

  it('takes 32 bytes in base64, refuses anything else without echoing it, and is masked in the logged configuration', () => {
    const env = {
      PERISCOPE_REDIS_URL: 'redis://redis:6379/0',
      PERISCOPE_REPLICA_SECRET: 'r'.repeat(32),
      PERISCOPE_AUTH_FILE: '/auth.yaml',
      PERISCOPE_AUTH_MODE: 'oidc',
    };
    const c = loadServerConfig({ ...env, PERISCOPE_SESSION_KEY: KEY }, () => OIDC);
    expect(Buffer.from(c.sharedState.sessionSecret ?? '', 'base64')).toHaveLength(32);
    expect(JSON.stringify(configForLog(c))).not.toContain(KEY);
    let err: unknown;
    try {
      loadServerConfig({ ...env, PERISCOPE_SESSION_KEY: 'too-short-key-zzz' }, () => OIDC);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toMatch(/PERISCOPE_SESSION_KEY/);
    expect((err as Error).message).not.toContain('too-short-key-zzz');
  });
});

describe(TokenSealer.name, () => {
  const tokens = { refreshToken: 'r-secret', idToken: 'id-secret', expiresAt: 1_900_000_000_000 };

  it('opens what it sealed for the same session only, and nothing under another key', () => {
    const key = randomBytes(32);
    const a = new TokenSealer(key);
    const sealed = a.seal(tokens, 'session-1') ?? '';
    expect(sealed).not.toContain('r-secret');
    expect(Buffer.from(sealed, 'base64url').toString('latin1')).not.toContain('secret');
    expect(new TokenSealer(key).open(sealed, 'session-1')).toEqual(tokens);
    expect(a.open(sealed, 'session-2')).toEqual({});
    expect(new TokenSealer(randomBytes(32)).open(sealed, 'session-1')).toEqual({});
    expect(a.open('garbage', 'session-1')).toEqual({});
    expect(a.seal({}, 'session-1')).toBeUndefined();
  });

  it('shares the sign-in cookie key between replicas given the same session key', () => {
    const c = loadServerConfig(
      { PERISCOPE_AUTH_FILE: '/auth.yaml', PERISCOPE_AUTH_MODE: 'dev', PERISCOPE_SESSION_KEY: KEY },
      () => DEV,
    );
    // The derivation OidcService uses: one replica seals the sign-in, another opens it.
    const key = (): Buffer =>
      deriveKey(Buffer.from(c.sharedState.sessionSecret ?? '', 'base64'), 'periscope-login-v1');
    const cookie = new LoginSealer(60_000, undefined, key()).seal({
      state: 's',
      nonce: 'n',
      codeVerifier: 'v',
      returnTo: '/',
    });
    expect(new LoginSealer(60_000, undefined, key()).open(cookie)).toMatchObject({ ok: true });
    expect(new LoginSealer(60_000).open(cookie)).toEqual({ ok: false, reason: 'invalid' });
  });
});
