import { describe, expect, it } from 'vitest';

import { DomainError, HTTP_STATUS } from '../common/domain-error';
import { Tickets, type TicketBase } from './tickets';

const base = { sessionId: 's', subject: 'alice', scope: '/api/clusters/c/shell' };

describe(Tickets.name, () => {
  it('redeems once, for its subject and socket path only', () => {
    const tickets = new Tickets<TicketBase & { sessionId: string }>();
    let released = 0;
    const { ticket } = tickets.issue({ ...base, release: () => released++ });
    expect(tickets.redeem(ticket, 'alice', base.scope)?.sessionId).toBe('s');
    expect(tickets.redeem(ticket, 'alice', base.scope)).toBeUndefined();
    expect(released).toBe(0); // the redeemer owns the slot now
    const other = tickets.issue({ ...base, release: () => released++ });
    expect(tickets.redeem(other.ticket, 'mallory', base.scope)).toBeUndefined();
    expect(released).toBe(1);
    const third = tickets.issue({ ...base, release: () => released++ });
    expect(tickets.redeem(third.ticket, 'alice', '/api/clusters/other/shell')).toBeUndefined();
    expect(released).toBe(2);
  });

  it('gives the cap slot back when a ticket expires unused, or on clear', async () => {
    const tickets = new Tickets<TicketBase>(50);
    let released = 0;
    tickets.issue({ ...base, release: () => released++ });
    await new Promise((r) => setTimeout(r, 120));
    expect(released).toBe(1);
    expect(tickets.size).toBe(0);
    const long = new Tickets<TicketBase>(60_000);
    long.issue({ ...base, release: () => released++ });
    long.clear();
    expect(released).toBe(2);
  });

  it('past its bound refuses with a coded 503 and gives the cap slot back', () => {
    const tickets = new Tickets<TicketBase>(60_000, 2);
    let released = 0;
    tickets.issue({ ...base, release: () => released++ });
    tickets.issue({ ...base, release: () => released++ });
    let err: unknown;
    try {
      tickets.issue({ ...base, release: () => released++ });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DomainError);
    const d = err as DomainError;
    expect(d.code).toBe('E_UNAVAILABLE');
    expect(HTTP_STATUS[d.code]).toBe(503);
    expect(d.message).toMatch(/try again/);
    expect(released).toBe(1); // the refused request's slot, not the pending ones
    expect(tickets.size).toBe(2);
    tickets.clear();
  });
});
