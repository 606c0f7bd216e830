/**
 * Keeps session tokens valid for the whole session when the apiserver grants shorter lifetimes
 * than asked (`--service-account-max-token-expiration`): a fresh token is requested and written
 * into the session Secret at 80 % of each granted lifetime, until the session's own end. Failed
 * rotations are retried every 30 s while the current token still lives. One timer per session,
 * cancelled at teardown. Bounded.
 */
export class TokenRotations {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly rotate: (sessionId: string) => Promise<{ tokenExpiresAt: Date }>,
    private readonly log: (o: Record<string, unknown>, message: string) => void = () => undefined,
    private readonly now: () => number = Date.now,
    private readonly max = 10_000,
  ) {}

  get size(): number {
    return this.timers.size;
  }

  /**
   * Call after each token: schedules the next rotation when `expiresAt` comes before `neededUntil`
   * (epoch ms, the latest the session can end). Returns whether one was scheduled.
   */
  track(sessionId: string, expiresAt: Date, neededUntil: number): boolean {
    this.cancel(sessionId);
    const now = this.now();
    if (expiresAt.getTime() >= neededUntil - 60_000) return false;
    if (this.timers.size >= this.max) {
      this.log({ sessionId }, 'too many sessions to rotate tokens for; this one keeps its granted lifetime');
      return false;
    }
    const delay = Math.max(1000, (expiresAt.getTime() - now) * 0.8);
    this.schedule(sessionId, delay, expiresAt, neededUntil);
    return true;
  }

  private schedule(sessionId: string, delay: number, expiresAt: Date, neededUntil: number): void {
    const t = setTimeout(() => {
      this.timers.delete(sessionId);
      this.rotate(sessionId).then(
        (r) => {
          this.log({ sessionId, expiresAt: r.tokenExpiresAt.toISOString() }, 'session token rotated');
          this.track(sessionId, r.tokenExpiresAt, neededUntil);
        },
        (err: unknown) => {
          const left = expiresAt.getTime() - this.now();
          this.log({ sessionId, err: (err as Error).message, msLeft: left }, 'session token rotation failed');
          // NotFound: the session is gone. Otherwise retry while the current token lives.
          if ((err as { code?: unknown }).code !== 404 && left > 30_000)
            this.schedule(sessionId, 30_000, expiresAt, neededUntil);
        },
      );
    }, delay);
    t.unref();
    this.timers.set(sessionId, t);
  }

  cancel(sessionId: string): void {
    const t = this.timers.get(sessionId);
    if (t) clearTimeout(t);
    this.timers.delete(sessionId);
  }
}
