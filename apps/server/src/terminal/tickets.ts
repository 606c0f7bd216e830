import { randomBytes } from 'node:crypto';

import { ERROR_CODE } from '@periscope/protocol';

import { DomainError } from '../common/domain-error';

/** What every ticket carries: whose it is, which socket path it opens, and the cap slot it holds. */
export interface TicketBase {
  subject: string;
  /** the socket path the ticket is valid for (a ticket for one cluster or pod opens nothing else) */
  scope: string;
  release: () => void;
}

/**
 * Single-use, short-lived tickets for opening a terminal socket after the admission checks
 * passed over plain HTTP (browsers cannot read the body of a refused upgrade). A ticket that is
 * never used gives its cap slot back when it expires. Bounded: past `max` pending tickets a new one
 * is refused with 503 E_UNAVAILABLE (and its cap slot given back).
 */
export class Tickets<T extends TicketBase> {
  private readonly tickets = new Map<string, { value: T; expiresAt: number; timer: NodeJS.Timeout }>();

  constructor(
    private readonly ttlMs = 30_000,
    private readonly max = 10_000,
  ) {}

  get size(): number {
    return this.tickets.size;
  }

  issue(value: T): { ticket: string; expiresAt: Date } {
    if (this.tickets.size >= this.max) {
      // The caller reserved a cap slot for this ticket: give it back before refusing.
      value.release();
      throw new DomainError(
        ERROR_CODE.unavailable,
        `the server holds ${this.max} unused terminal tickets (each lives ${Math.round(this.ttlMs / 1000)} s); try again in a few seconds`,
      );
    }
    const ticket = randomBytes(24).toString('base64url');
    const expiresAt = Date.now() + this.ttlMs;
    const timer = setTimeout(() => {
      this.tickets.delete(ticket);
      value.release();
    }, this.ttlMs);
    timer.unref();
    this.tickets.set(ticket, { value, expiresAt, timer });
    return { ticket, expiresAt: new Date(expiresAt) };
  }

  /** Takes the ticket (once). The caller now owns the cap slot and must release it. */
  redeem(ticket: string, subject: string, scope: string): T | undefined {
    const t = this.tickets.get(ticket);
    if (!t) return undefined;
    this.tickets.delete(ticket);
    clearTimeout(t.timer);
    if (t.value.subject !== subject || t.value.scope !== scope || t.expiresAt < Date.now()) {
      t.value.release();
      return undefined;
    }
    return t.value;
  }

  /** Gives every pending slot back (server shutdown). */
  clear(): void {
    for (const t of this.tickets.values()) {
      clearTimeout(t.timer);
      t.value.release();
    }
    this.tickets.clear();
  }
}
