import { randomBytes } from 'node:crypto';

export interface ShellTicket {
  sessionId: string;
  subject: string;
  cluster: string;
  tier: string;
  mode: string;
  release: () => void;
}

/**
 * Single-use, short-lived tickets for opening the cluster-shell socket after the admission checks
 * passed over plain HTTP (browsers cannot read the body of a refused upgrade). A ticket that is
 * never used gives its cap slot back when it expires. Bounded.
 */
export class ShellTickets {
  private readonly tickets = new Map<string, ShellTicket & { expiresAt: number; timer: NodeJS.Timeout }>();

  constructor(
    private readonly ttlMs = 30_000,
    private readonly max = 10_000,
  ) {}

  get size(): number {
    return this.tickets.size;
  }

  issue(t: ShellTicket): { ticket: string; expiresAt: Date } {
    if (this.tickets.size >= this.max) throw new Error('too many pending shell tickets');
    const ticket = randomBytes(24).toString('base64url');
    const expiresAt = Date.now() + this.ttlMs;
    const timer = setTimeout(() => {
      this.tickets.delete(ticket);
      t.release();
    }, this.ttlMs);
    timer.unref();
    this.tickets.set(ticket, { ...t, expiresAt, timer });
    return { ticket, expiresAt: new Date(expiresAt) };
  }

  /** Takes the ticket (once). The caller now owns the cap slot and must release it. */
  redeem(ticket: string, subject: string, cluster: string): ShellTicket | undefined {
    const t = this.tickets.get(ticket);
    if (!t) return undefined;
    this.tickets.delete(ticket);
    clearTimeout(t.timer);
    if (t.subject !== subject || t.cluster !== cluster || t.expiresAt < Date.now()) {
      t.release();
      return undefined;
    }
    return {
      sessionId: t.sessionId,
      subject: t.subject,
      cluster: t.cluster,
      tier: t.tier,
      mode: t.mode,
      release: t.release,
    };
  }
}
