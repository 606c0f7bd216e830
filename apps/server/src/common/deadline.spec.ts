import { describe, expect, it } from 'vitest';

import { DeadlineError, settleWithin, withDeadline } from './deadline';

const never = (): Promise<never> => new Promise(() => undefined);

describe(withDeadline.name, () => {
  it('answers like the promise when it settles in time', async () => {
    await expect(withDeadline(Promise.resolve(7), 1000, 'x')).resolves.toBe(7);
    await expect(withDeadline(Promise.reject(new Error('boom')), 1000, 'x')).rejects.toThrow('boom');
  });

  it('rejects with a DeadlineError naming the step when it does not', async () => {
    const err = await withDeadline(never(), 20, 'reading the log').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineError);
    expect((err as Error).message).toBe('reading the log did not finish within 20 ms');
  });
});

describe(settleWithin.name, () => {
  it('says how the promise settled, never rejecting', async () => {
    expect(await settleWithin(Promise.resolve(), 1000)).toBe('ok');
    expect(await settleWithin(Promise.reject(new Error('no')), 1000)).toBe('failed');
    expect(await settleWithin(never(), 20)).toBe('timeout');
    // A rejection that happens to be a DeadlineError is still the promise's own failure.
    expect(await settleWithin(Promise.reject(new DeadlineError('x', 1)), 1000)).toBe('failed');
  });
});
