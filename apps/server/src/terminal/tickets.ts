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

/** A ticket as issued: its value (secret) and when it expires. */
export interface IssuedTicket {
  ticket: string;
  expiresAt: Date;
}

/**
 * The ticket port: {@link InMemoryTickets} (one replica: today's behaviour) or tickets in Redis
 * (terminal/redis-tickets.ts), so a ticket issued by one replica is redeemed once on any.
 */
export interface TicketStore<T extends TicketBase> {
  /** pending tickets this replica issued */
  readonly size: number;
  /** Issues a ticket for `value` (its cap slot goes with it); 503 E_UNAVAILABLE past the bound. */
  issue(value: T): Promise<IssuedTicket>;
  /**
   * Takes the ticket (once, whichever replica asks first). The caller now owns the cap slot and
   * must release it; undefined when unknown, used, expired, or for another subject or path.
   */
  redeem(ticket: string, subject: string, scope: string): Promise<T | undefined>;
  /** Gives every pending slot of this replica back (server shutdown). */
  clear(): void;
}

/** The in-memory adapter: {@link Tickets} of this one process, as they always were. */
export class InMemoryTickets<T extends TicketBase> implements TicketStore<T> {
  constructor(readonly tickets: Tickets<T> = new Tickets<T>()) {}

  get size(): number {
    return this.tickets.size;
  }

  issue(value: T): Promise<IssuedTicket> {
    // A throw (a bound reached) becomes the rejection.
    return new Promise((resolve) => {
      resolve(this.tickets.issue(value));
    });
  }

  redeem(ticket: string, subject: string, scope: string): Promise<T | undefined> {
    return Promise.resolve(this.tickets.redeem(ticket, subject, scope));
  }

  clear(): void {
    this.tickets.clear();
  }
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

  issue(value: T): IssuedTicket {
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
