import { afterEach, describe, expect, it, vi } from 'vitest';

import { TokenRotations } from './token-rotations';

describe(TokenRotations.name, () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('does nothing when the granted lifetime covers the session', () => {
    const r = new TokenRotations(() => Promise.reject(new Error('unused')));
    const now = Date.now();
    expect(r.track('s', new Date(now + 3_600_000), now + 3_600_000)).toBe(false);
    expect(r.size).toBe(0);
  });

  it('rotates at 80 % of each granted lifetime until the session end, and stops at cancel', async () => {
    vi.useFakeTimers();
    const start = Date.now();
    const rotations: number[] = [];
    const r = new TokenRotations((sid) => {
      expect(sid).toBe('s');
      rotations.push(Date.now() - start);
      return Promise.resolve({ tokenExpiresAt: new Date(Date.now() + 3_600_000) });
    });
    // an apiserver that caps at 1 h; the session may last 3 h
    expect(r.track('s', new Date(start + 3_600_000), start + 3 * 3_600_000)).toBe(true);
    await vi.advanceTimersByTimeAsync(2_880_000);
    expect(rotations).toEqual([2_880_000]);
    await vi.advanceTimersByTimeAsync(2_880_000);
    expect(rotations).toEqual([2_880_000, 5_760_000]);
    r.cancel('s');
    await vi.advanceTimersByTimeAsync(10 * 3_600_000);
    expect(rotations).toHaveLength(2);
    expect(r.size).toBe(0);
  });

  it('retries a failed rotation every 30 s while the token lives, and gives up on NotFound', async () => {
    vi.useFakeTimers();
    const start = Date.now();
    let calls = 0;
    const r = new TokenRotations(() => {
      calls++;
      return calls === 1
        ? Promise.reject(new Error('apiserver away'))
        : Promise.reject(Object.assign(new Error('gone'), { code: 404 }));
    });
    r.track('s', new Date(start + 600_000), start + 7_200_000);
    await vi.advanceTimersByTimeAsync(480_000);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(calls).toBe(2);
    expect(r.size).toBe(0);
  });
});
