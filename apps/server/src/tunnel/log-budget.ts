/**
 * At most `max` log lines per key and window; answers whether to log this one and, at the first
 * line of a new window, how many the last window suppressed. Bounded: one entry per key (keys
 * are cluster names from the clusters file).
 */
export class LogBudget {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly now: () => number = () => Date.now(),
  ) {}

  note(key: string): { log: boolean; suppressed: number } {
    const t = this.now();
    let w = this.windows.get(key);
    let suppressed = 0;
    if (!w || t - w.start >= this.windowMs) {
      suppressed = w ? Math.max(0, w.count - this.max) : 0;
      w = { start: t, count: 0 };
      this.windows.set(key, w);
    }
    w.count++;
    return { log: w.count <= this.max, suppressed };
  }
}
