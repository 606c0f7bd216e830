import { describe, expect, it } from 'vitest';

import { ShellTickets } from './shell-tickets';

const base = { sessionId: 's', subject: 'alice', cluster: 'c', tier: 'admin', mode: 'bash' };

describe(ShellTickets.name, () => {
  it('redeems once, for its subject and cluster only', () => {
    const tickets = new ShellTickets();
    let released = 0;
    const { ticket } = tickets.issue({ ...base, release: () => released++ });
    expect(tickets.redeem(ticket, 'alice', 'c')?.sessionId).toBe('s');
    expect(tickets.redeem(ticket, 'alice', 'c')).toBeUndefined();
    expect(released).toBe(0); // the redeemer owns the slot now
    const other = tickets.issue({ ...base, release: () => released++ });
    expect(tickets.redeem(other.ticket, 'mallory', 'c')).toBeUndefined();
    expect(released).toBe(1);
  });

  it('gives the cap slot back when a ticket expires unused', async () => {
    const tickets = new ShellTickets(50);
    let released = 0;
    tickets.issue({ ...base, release: () => released++ });
    await new Promise((r) => setTimeout(r, 120));
    expect(released).toBe(1);
    expect(tickets.size).toBe(0);
  });
});
