/**
 * Jittered exponential backoff for reconnects: 1 s doubling to 30 s, each delay randomised by
 * ±50 %, reset once a connection has stayed healthy for `healthyMs`.
 */
export class Backoff {
  private attempt = 0;
  private connectedAt: number | undefined;

  constructor(
    private readonly opts: { initialMs: number; maxMs: number; jitter: number; healthyMs: number } = {
      initialMs: 1000,
      maxMs: 30_000,
      jitter: 0.5,
      healthyMs: 60_000,
    },
    private readonly random: () => number = Math.random,
    private readonly now: () => number = Date.now,
  ) {}

  /** Delay before the next attempt. */
  next(): number {
    const base = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    const spread = base * this.opts.jitter;
    return Math.round(Math.min(this.opts.maxMs, Math.max(0, base - spread + this.random() * 2 * spread)));
  }

  connected(): void {
    this.connectedAt = this.now();
  }

  disconnected(): void {
    if (this.connectedAt !== undefined && this.now() - this.connectedAt >= this.opts.healthyMs)
      this.attempt = 0;
    this.connectedAt = undefined;
  }
}
