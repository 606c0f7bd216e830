import { describe, expect, it } from 'vitest';

import { CreditViolation, ReceiveCredit, SendCredit } from './credit';

/** Moves bytes from a sender to a receiver whose sink drains `drain` bytes per step. */
function simulate(
  window: number,
  total: number,
  chunk: number,
  drain: number,
): { steps: number; delivered: number } {
  const tx = new SendCredit(window);
  const rx = new ReceiveCredit(window);
  let delivered = 0;
  let steps = 0;
  while (delivered < total) {
    if (++steps > 1_000_000) throw new Error('deadlock');
    const n = Math.min(chunk, tx.available(), total - tx.offset);
    if (n > 0) {
      const skip = rx.accept(tx.offset, n);
      expect(skip).toBe(0);
      tx.spend(n);
    }
    const take = Math.min(drain, rx.buffered);
    delivered += take;
    const grant = rx.consume(take);
    if (grant !== undefined) tx.grant(grant, window);
  }
  return { steps, delivered };
}

describe('credit accounting', () => {
  it.each([
    [256 * 1024, 32 * 1024, 32 * 1024],
    [256 * 1024, 32 * 1024, 1],
    [1024, 1000, 7],
    [3, 1, 1],
  ])('never deadlocks (window %i, chunk %i, drain %i)', (window, chunk, drain) => {
    expect(simulate(window, 50_000, chunk, drain).delivered).toBe(50_000);
  });

  it('grants at half a window, not per byte', () => {
    const rx = new ReceiveCredit(1000);
    rx.accept(0, 400);
    expect(rx.consume(400)).toBeUndefined();
    rx.accept(400, 200);
    expect(rx.consume(200)).toBe(600);
  });

  it('grants at once when the sender is fully blocked', () => {
    const rx = new ReceiveCredit(1000);
    rx.accept(0, 1000);
    expect(rx.consume(1)).toBe(1);
  });

  it('refuses bytes beyond the window and gaps', () => {
    const rx = new ReceiveCredit(100);
    expect(() => rx.accept(0, 101)).toThrow(CreditViolation);
    expect(() => rx.accept(5, 1)).toThrow(CreditViolation);
  });

  it('skips bytes already received (replay after resume)', () => {
    const rx = new ReceiveCredit(100);
    rx.accept(0, 50);
    expect(rx.accept(40, 20)).toBe(10);
    expect(rx.offset).toBe(60);
    expect(rx.accept(0, 30)).toBe(30);
  });

  it('sender refuses to overspend and ignores stale grants', () => {
    const tx = new SendCredit(100);
    tx.spend(100);
    expect(() => {
      tx.spend(1);
    }).toThrow(CreditViolation);
    tx.grant(60, 100);
    expect(tx.available()).toBe(60);
    tx.grant(10, 100);
    expect(tx.available()).toBe(60);
    expect(() => {
      tx.grant(500, 100);
    }).toThrow(CreditViolation);
  });

  it('refuses a window beyond what any peer may grant (a hostile peer cannot lift flow control)', () => {
    const tx = new SendCredit(100);
    tx.spend(50);
    expect(() => {
      tx.grant(50, 2 ** 32 - 1);
    }).toThrow(/window 4294967295 outside 1\.\.16777216/);
    expect(() => {
      tx.grant(50, 0);
    }).toThrow(CreditViolation);
    expect(tx.available()).toBe(50);
    tx.grant(50, 16 * 1024 * 1024);
    expect(tx.available()).toBe(16 * 1024 * 1024);
  });

  it('handles offsets far beyond 2^32 without overflow', () => {
    const tx = new SendCredit(2 ** 20);
    const rx = new ReceiveCredit(2 ** 20);
    for (let i = 0; i < 5000; i++) {
      const n = tx.available();
      rx.accept(tx.offset, n);
      tx.spend(n);
      tx.grant(rx.consume(n) ?? rx.consumed, 2 ** 20);
    }
    expect(tx.offset).toBe(5000 * 2 ** 20);
    expect(tx.offset).toBeGreaterThan(2 ** 32);
  });

  it('rewinds for a resume only within what the peer may be missing', () => {
    const tx = new SendCredit(100);
    tx.spend(80);
    tx.grant(30, 100);
    tx.rewindTo(50);
    expect(tx.offset).toBe(50);
    expect(() => {
      tx.rewindTo(10);
    }).toThrow(CreditViolation);
  });
});
