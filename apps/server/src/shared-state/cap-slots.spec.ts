import { describe, expect, it } from 'vitest';

import { CapReservations } from './cap-slots';

describe(CapReservations.name, () => {
  it('caps sessions per subject across clusters and lists them', () => {
    const caps = new CapReservations(2, 10);
    expect(caps.reserve('alice', 'a', 's1').ok).toBe(true);
    expect(caps.reserve('alice', 'b', 's2').ok).toBe(true);
    const refused = caps.reserve('alice', 'c', 's3');
    expect(refused).toMatchObject({ ok: false, cap: 'user', limit: 2 });
    expect(
      !refused.ok && refused.cap === 'user' ? refused.activeSessions.map((s) => s.sessionId) : [],
    ).toEqual(['s1', 's2']);
    expect(caps.reserve('bob', 'c', 's4').ok).toBe(true);
  });

  it('caps sessions per cluster across subjects', () => {
    const caps = new CapReservations(5, 2);
    caps.reserve('a', 'x', '1');
    caps.reserve('b', 'x', '2');
    expect(caps.reserve('c', 'x', '3')).toMatchObject({
      ok: false,
      cap: 'cluster',
      limit: 2,
      activeSessions: 2,
    });
    expect(caps.reserve('c', 'y', '4').ok).toBe(true);
  });

  it('releases a slot exactly once', () => {
    const caps = new CapReservations(1, 10);
    const r = caps.reserve('alice', 'a', 's1');
    if (!r.ok) throw new Error('expected a slot');
    r.release();
    r.release();
    expect(caps.size).toBe(0);
    expect(caps.reserve('alice', 'a', 's2').ok).toBe(true);
    expect(caps.reserve('alice', 'a', 's3').ok).toBe(false);
  });

  it('never over-admits under concurrent reservations', async () => {
    const caps = new CapReservations(3, 100);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => Promise.resolve().then(() => caps.reserve('alice', 'a', `s${i}`))),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(3);
  });
});
