import { describe, expect, it } from 'vitest';

import { PendingLogins, type PendingLogin } from './pending-logins';

const login = (n: number): PendingLogin => ({
  state: `s${String(n)}`,
  nonce: `n${String(n)}`,
  codeVerifier: `v${String(n)}`,
  returnTo: '/',
});

describe(PendingLogins.name, () => {
  it('answers a pending login once, by its random id', () => {
    const store = new PendingLogins({ ttlMs: 600_000, max: 10 });
    const id = store.put(login(1));
    expect(id).toMatch(/^[\w-]{32}$/);
    expect(store.take('other')).toBeUndefined();
    expect(store.take(undefined)).toBeUndefined();
    expect(store.take(id)).toEqual(login(1));
    expect(store.take(id)).toBeUndefined();
  });

  it('expires entries after the ttl and sweeps them on the next put', () => {
    let t = 0;
    const store = new PendingLogins({ ttlMs: 600_000, max: 10 }, () => t);
    const a = store.put(login(1));
    const b = store.put(login(2));
    t = 599_999;
    expect(store.take(a)).toEqual(login(1));
    t = 600_000;
    expect(store.take(b)).toBeUndefined();
    store.put(login(3));
    t = 1_300_000;
    store.put(login(4));
    expect(store.size).toBe(1);
  });

  it('is bounded: the oldest pending login goes first', () => {
    const store = new PendingLogins({ ttlMs: 600_000, max: 3 });
    const ids = [1, 2, 3, 4].map((n) => store.put(login(n)));
    expect(store.size).toBe(3);
    expect(store.take(ids[0])).toBeUndefined();
    expect(store.take(ids[3])).toEqual(login(4));
  });
});
