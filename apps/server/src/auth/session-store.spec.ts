import { describe, expect, it } from 'vitest';

import { DomainError } from '../common/domain-error';
import { SessionStore, type Principal, type ProviderTokens, type Refreshed } from './session-store';

const alice: Principal = { subject: 'alice', email: 'a@x', groups: ['dev'], tier: 'read' };
const opts = { idleMs: 60_000, absoluteMs: 300_000, max: 3 };

describe(SessionStore.name, () => {
  it('ends sessions after idle or absolute timeout', () => {
    let t = 0;
    const store = new SessionStore(opts, () => t);
    const id = store.create(alice);
    t = 59_000;
    expect(store.get(id)).toEqual(alice);
    t = 119_001;
    expect(store.get(id)).toBeUndefined();
    const ids = [1, 2, 3].map(() => store.create(alice));
    for (let i = 0; i < 6; i++) {
      t += 50_000;
      expect(store.get(ids[2])).toEqual(alice);
    }
    t += 50_001;
    expect(store.get(ids[2])).toBeUndefined();
  });

  it('when full, refuses a new sign-in (503) instead of pushing anyone out; expired ones make room', () => {
    let t = 0;
    const store = new SessionStore(opts, () => t);
    const people = ['a', 'b', 'c'].map((subject) => store.create({ ...alice, subject }));
    let err: unknown;
    try {
      store.create({ ...alice, subject: 'mallory' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DomainError);
    expect(err).toMatchObject({ code: 'E_UNAVAILABLE' });
    expect((err as Error).message).toMatch(/sign-ins are refused until sessions end/);
    for (const id of people) expect(store.get(id)).toBeDefined();
    // one session idles out: its slot is free again
    t = 30_000;
    store.get(people[1]);
    store.get(people[2]);
    t = 61_000;
    const next = store.create({ ...alice, subject: 'mallory' });
    expect(store.get(next)?.subject).toBe('mallory');
    expect(store.get(people[0])).toBeUndefined();
    expect(store.get(people[1])).toBeDefined();
  });

  it("ends only the person's own oldest session past their per-person bound", () => {
    const store = new SessionStore({ ...opts, max: 100, maxPerSubject: 2 });
    const bob = store.create({ ...alice, subject: 'bob' });
    const [a1, a2, a3] = [1, 2, 3].map(() => store.create(alice));
    expect(store.get(a1)).toBeUndefined();
    expect(store.get(a2)).toEqual(alice);
    expect(store.get(a3)).toEqual(alice);
    expect(store.get(bob)?.subject).toBe('bob');
    expect(store.size).toBe(3);
    store.delete(a2);
    store.delete(a3);
    expect(store.size).toBe(1);
  });

  it('refreshes due tokens once for concurrent callers and keeps the new tokens', async () => {
    let t = 0;
    const store = new SessionStore(opts, () => t);
    const id = store.create(alice, { refreshToken: 'r1', idToken: 'i1', expiresAt: 40_000 });
    let calls = 0;
    let seen: ProviderTokens | undefined;
    const refresh = async (tokens: ProviderTokens): Promise<Refreshed> => {
      calls++;
      seen = tokens;
      await new Promise((r) => setTimeout(r, 10));
      return {
        principal: { ...alice, tier: 'admin' },
        tokens: { refreshToken: 'r2', expiresAt: t + 40_000 },
      };
    };
    t = 29_000;
    expect(await store.current(id, refresh)).toEqual(alice);
    expect(store.refreshDue(id)).toBe(false);
    t = 30_000; // a quarter of the 40 s lifetime before expiry
    expect(store.refreshDue(id)).toBe(true);
    const all = await Promise.all([1, 2, 3].map(() => store.current(id, refresh)));
    expect(calls).toBe(1);
    expect(seen).toEqual({ refreshToken: 'r1', idToken: 'i1', expiresAt: 40_000 });
    for (const p of all) expect(p?.tier).toBe('admin');
    expect(store.refreshDue(id)).toBe(false);
    expect(store.delete(id)).toEqual({ refreshToken: 'r2', expiresAt: 70_000 });
  });

  it('ends the session when the refresh fails or is refused', async () => {
    let t = 0;
    const store = new SessionStore(opts, () => t);
    const a = store.create(alice, { refreshToken: 'r', expiresAt: 1_000 });
    const b = store.create(alice, { refreshToken: 'r', expiresAt: 1_000 });
    t = 2_000;
    expect(await store.current(a, () => Promise.reject(new Error('invalid_grant')))).toBeUndefined();
    expect(store.get(a)).toBeUndefined();
    expect(await store.current(b, () => Promise.resolve(null))).toBeUndefined();
    expect(store.get(b)).toBeUndefined();
  });

  it('never refreshes without a refresh token, and does not revive a session signed out meanwhile', async () => {
    let t = 0;
    const store = new SessionStore(opts, () => t);
    const plain = store.create(alice, { idToken: 'i', expiresAt: 1_000 });
    t = 2_000;
    expect(store.refreshDue(plain)).toBe(false);
    expect(await store.current(plain, () => Promise.reject(new Error('not called')))).toEqual(alice);

    const id = store.create(alice, { refreshToken: 'r', expiresAt: 3_000 });
    t = 4_000;
    const pending = store.current(id, async () => {
      store.delete(id);
      return Promise.resolve({ principal: alice, tokens: {} });
    });
    expect(await pending).toBeUndefined();
    expect(store.get(id)).toBeUndefined();
  });
});
