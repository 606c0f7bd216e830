import { describe, expect, it } from 'vitest';

import { LogBudget } from './log-budget';

describe(LogBudget.name, () => {
  it('logs a few lines per key and window, then says how many it left out', () => {
    let now = 0;
    const b = new LogBudget(3, 1000, () => now);
    const first = Array.from({ length: 10 }, () => b.note('edge'));
    expect(first.map((n) => n.log)).toEqual([
      true,
      true,
      true,
      false,
      false,
      false,
      false,
      false,
      false,
      false,
    ]);
    expect(b.note('other').log).toBe(true); // per key
    now = 1000;
    expect(b.note('edge')).toEqual({ log: true, suppressed: 7 });
    expect(b.note('edge')).toEqual({ log: true, suppressed: 0 });
  });
});
