import { describe, expect, it } from 'vitest';

import { RegistrationTokens } from './registration-tokens';

describe(RegistrationTokens.name, () => {
  it('redeems a token once for its cluster', () => {
    const tokens = new RegistrationTokens();
    const { token } = tokens.mint('edge-1');
    expect(tokens.redeem(token, 'edge-1')).toEqual({ ok: true });
    expect(tokens.redeem(token, 'edge-1')).toEqual({ ok: false, reason: 'used' });
  });

  it('burns a token presented with the wrong cluster name', () => {
    const tokens = new RegistrationTokens();
    const { token } = tokens.mint('edge-1');
    expect(tokens.redeem(token, 'edge-2')).toEqual({ ok: false, reason: 'wrong_cluster' });
    expect(tokens.redeem(token, 'edge-1')).toEqual({ ok: false, reason: 'used' });
  });

  it('expires after its TTL and is forgotten', () => {
    let now = 1_000_000;
    const tokens = new RegistrationTokens(15 * 60_000, 10, () => now);
    const { token, expiresAt } = tokens.mint('edge-1');
    expect(expiresAt.getTime()).toBe(now + 15 * 60_000);
    now += 15 * 60_000;
    expect(tokens.redeem(token, 'edge-1')).toEqual({ ok: false, reason: 'expired' });
    tokens.sweep();
    expect(tokens.size).toBe(0);
  });

  it('refuses unknown tokens and bounds the number of live tokens', () => {
    const tokens = new RegistrationTokens(60_000, 2);
    expect(tokens.redeem('psc_nope', 'edge-1')).toEqual({ ok: false, reason: 'unknown' });
    tokens.mint('a');
    tokens.mint('b');
    expect(() => tokens.mint('c')).toThrow(/too many/);
  });

  it('lets exactly one of many concurrent redemptions win', async () => {
    const tokens = new RegistrationTokens();
    const { token } = tokens.mint('edge-1');
    const results = await Promise.all(
      Array.from({ length: 50 }, () => Promise.resolve().then(() => tokens.redeem(token, 'edge-1'))),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(1);
  });
});
