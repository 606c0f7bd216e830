import { describe, expect, it } from 'vitest';

import { Backoff } from './backoff';

describe(Backoff.name, () => {
  it('doubles from 1 s to a 30 s cap', () => {
    const b = new Backoff(undefined, () => 0.5);
    expect(Array.from({ length: 8 }, () => b.next())).toEqual([
      1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000,
    ]);
  });

  it('spreads each delay by ±50 % and never exceeds the cap', () => {
    const low = new Backoff(undefined, () => 0);
    const high = new Backoff(undefined, () => 0.999_999);
    expect(low.next()).toBe(500);
    expect(high.next()).toBe(1500);
    for (let i = 0; i < 10; i++) expect(high.next()).toBeLessThanOrEqual(30_000);
  });

  it('resets only after a healthy period', () => {
    let now = 0;
    const b = new Backoff(
      undefined,
      () => 0.5,
      () => now,
    );
    b.next();
    b.next();
    b.connected();
    now += 10_000;
    b.disconnected();
    expect(b.next()).toBe(4000);
    b.connected();
    now += 60_000;
    b.disconnected();
    expect(b.next()).toBe(1000);
  });
});
