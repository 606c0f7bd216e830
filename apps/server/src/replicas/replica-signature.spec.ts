import { describe, expect, it } from 'vitest';

import { SIGNATURE_MAX_AGE_MS, signForward, verifyForward } from './replica-signature';

const SECRET = 'k'.repeat(32);
const NOW = 1_800_000_000_000;

describe('replica signature', () => {
  it('verifies what a replica with the same secret signed, and names the replica', () => {
    const h = signForward(SECRET, 'replica-a', 'get', '/api/clusters/edge/shell?ticket=t', NOW);
    expect(h).toMatch(/^v1;replica-a;1800000000000;[0-9a-f]{64}$/);
    expect(verifyForward(SECRET, h, 'GET', '/api/clusters/edge/shell?ticket=t', NOW + 1_000)).toEqual({
      ok: true,
      replica: 'replica-a',
    });
  });

  it('refuses another secret, another method, path, query, replica or time as forged', () => {
    const h = signForward(SECRET, 'replica-a', 'POST', '/api/sessions/x', NOW);
    const path = '/api/sessions/x';
    expect(verifyForward('z'.repeat(32), h, 'POST', path, NOW)).toEqual({ ok: false, reason: 'forged' });
    expect(verifyForward(SECRET, h, 'DELETE', path, NOW)).toEqual({ ok: false, reason: 'forged' });
    expect(verifyForward(SECRET, h, 'POST', '/api/sessions/y', NOW)).toEqual({ ok: false, reason: 'forged' });
    expect(verifyForward(SECRET, h, 'POST', `${path}?a=1`, NOW)).toEqual({ ok: false, reason: 'forged' });
    expect(verifyForward(SECRET, h.replace('replica-a', 'replica-b'), 'POST', path, NOW)).toEqual({
      ok: false,
      reason: 'forged',
    });
    expect(verifyForward(SECRET, h.replace(String(NOW), String(NOW + 1)), 'POST', path, NOW)).toEqual({
      ok: false,
      reason: 'forged',
    });
  });

  it('refuses a genuine signature older or newer than 30 s as expired', () => {
    const h = signForward(SECRET, 'r', 'GET', '/p', NOW);
    expect(verifyForward(SECRET, h, 'GET', '/p', NOW + SIGNATURE_MAX_AGE_MS).ok).toBe(true);
    expect(verifyForward(SECRET, h, 'GET', '/p', NOW + SIGNATURE_MAX_AGE_MS + 1)).toEqual({
      ok: false,
      reason: 'expired',
    });
    expect(verifyForward(SECRET, h, 'GET', '/p', NOW - SIGNATURE_MAX_AGE_MS - 1)).toEqual({
      ok: false,
      reason: 'expired',
    });
  });

  it('refuses malformed headers without parsing further', () => {
    for (const bad of [
      undefined,
      ['a', 'b'],
      '',
      'v1;r;1;abc',
      'v2;r;1;' + 'a'.repeat(64),
      'v1;r x;1;' + 'a'.repeat(64),
      'v1;r;-1;' + 'a'.repeat(64),
      'v1;r;1;' + 'A'.repeat(64),
      'v1;r;1;' + 'a'.repeat(64) + ';extra',
      'v1;r;1;' + 'a'.repeat(500),
    ])
      expect(verifyForward(SECRET, bad, 'GET', '/p', NOW)).toEqual({ ok: false, reason: 'malformed' });
  });
});
