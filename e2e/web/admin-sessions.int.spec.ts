/**
 * The admin sessions page in the browser, against the whole local system: an admin sees another
 * person's live cluster shell (and their own), filters the list, ends the other one with a
 * reason; that person's terminal says who ended it and why; the audit page shows the close record
 * with the reason. A non-admin has no Sessions link, sees only their own sessions through the API
 * and cannot end someone else's. And a refused open (a tier the cluster shell does not allow) is
 * on the refused person's audit page with its code.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { hasPrompt, screenshot, typeLine, waitTerminal } from './browser';
import { OncallRig } from './oncall-rig';

interface Answer {
  status: number;
  body: unknown;
}

/** A same-origin API call from the page (its sign-in cookie), as the web UI makes it. */
function call(page: Page, method: string, path: string, body?: unknown): Promise<Answer> {
  return page.evaluate(
    async ({ method, path, body }) => {
      const res = await fetch(path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text === '' ? null : (JSON.parse(text) as unknown) };
    },
    { method, path, body },
  );
}

interface SessionRow {
  sessionId: string;
  subject: string;
  kind: string;
}

async function openShell(page: Page): Promise<void> {
  await page
    .getByRole('table', { name: 'clusters' })
    .getByRole('link', { name: 'local', exact: true })
    .click();
  await page.getByRole('button', { name: 'Shell', exact: true }).click();
}

const REASON = 'incident 4711: freezing changes on local — please stop';

describe('admin sessions page', () => {
  let admin: Page;
  let oncall: Page;
  let reader: Page;

  const rig = new OncallRig();

  beforeAll(async () => {
    ({ admin, oncall, reader } = await rig.start('web-admin-sessions'));
  });

  afterAll(() => rig.stop());

  it('an admin sees another person’s live shell, filters, and ends it with a reason they see', async () => {
    // Two people with a live cluster shell each (opened side by side).
    await Promise.all([openShell(oncall), openShell(admin)]);
    await Promise.all([
      waitTerminal(oncall, 'the oncall prompt', hasPrompt, 90_000),
      waitTerminal(admin, 'the admin prompt', hasPrompt, 90_000),
    ]);
    await typeLine(oncall, 'echo from-oncall-$((6*7))');
    await waitTerminal(oncall, 'the echo', (t) => t.includes('from-oncall-42'));

    // The non-admin: no Sessions link, only their own (no) sessions, and no ending others'.
    const listed = await call(admin, 'GET', '/api/sessions');
    const victim = (listed.body as { sessions: SessionRow[] }).sessions.find((s) => s.subject === 'oncall');
    expect(victim).toMatchObject({ kind: 'cluster_shell' });
    const victimId = victim?.sessionId ?? '';
    expect(await call(reader, 'GET', '/api/sessions')).toEqual({ status: 200, body: { sessions: [] } });
    const refused = await call(reader, 'DELETE', `/api/sessions/${victimId}`, { reason: 'not mine' });
    expect(refused).toMatchObject({ status: 404, body: { error: 'E_NOT_FOUND' } });
    const readerNav = reader.getByRole('navigation', { name: 'main' });
    await readerNav.getByRole('link', { name: 'Audit' }).waitFor();
    expect(await readerNav.getByRole('link', { name: 'Sessions' }).count()).toBe(0);

    // The admin's page: both sessions, with who, cluster, kind, mode, tier and byte counts.
    await admin.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Sessions' }).click();
    const table = admin.getByRole('table', { name: 'live sessions' });
    const oncallRow = table.getByRole('row').filter({ hasText: 'oncall' });
    const adminRow = table.getByRole('row').filter({ hasText: '(you)' });
    await oncallRow.waitFor({ timeout: 30_000 });
    await adminRow.waitFor();
    const cells = await oncallRow.getByRole('cell').allTextContents();
    expect(cells.slice(0, 5)).toEqual(['oncall', 'local', 'cluster shell', 'bash', 'admin']);
    expect(cells[8]).toMatch(/\d+(\.\d)? (B|KiB)/); // bytes out: the prompt and the echo
    expect(cells[9]).toBe('attached');

    // Filters: by person, then by a kind nobody has, then cleared.
    const filters = admin.getByRole('form', { name: 'session filters' });
    await filters.getByLabel('person').selectOption('oncall');
    await adminRow.waitFor({ state: 'detached' });
    expect(await oncallRow.count()).toBe(1);
    expect(admin.url()).toContain('subject=oncall');
    await filters.getByLabel('kind').selectOption('pod_exec');
    const empty = admin.getByTestId('sessions-empty');
    await empty.waitFor();
    expect(await empty.textContent()).toContain('No live session matches the filters (2 live in all)');
    await filters.getByLabel('kind').selectOption('');
    await oncallRow.waitFor();
    await screenshot(admin, 'sessions-filtered');
    await filters.getByRole('button', { name: 'clear filters' }).click();
    await adminRow.waitFor();

    // A refresh that fails: the last list stays, a bar says why and that it tries again; it recovers.
    await admin.route('**/api/sessions', (r) =>
      r.fulfill({
        status: 503,
        contentType: 'application/json',
        body: JSON.stringify({ error: 'E_UNAVAILABLE', message: 'server restarting' }),
      }),
    );
    const failed = admin.getByTestId('sessions-error');
    await failed.waitFor({ timeout: 20_000 });
    expect(await failed.textContent()).toMatch(
      /^Refreshing the sessions failed: server restarting; trying again/,
    );
    expect(await oncallRow.count()).toBe(1);
    await admin.unroute('**/api/sessions');
    await failed.getByRole('button', { name: 'retry now' }).click();
    await failed.waitFor({ state: 'detached', timeout: 20_000 });

    // End oncall's session with a reason.
    await oncallRow.getByRole('button', { name: /^end the session of oncall/ }).click();
    const form = admin.getByRole('form', { name: 'end the session of oncall' });
    await form.getByLabel(/^reason/).fill(REASON);
    await screenshot(admin, 'sessions-end-form');
    await form.getByRole('button', { name: 'end session' }).click();
    const notice = admin.getByTestId('sessions-notice');
    await notice.waitFor();
    expect(await notice.textContent()).toContain('Ended the cluster shell of oncall on local');
    await oncallRow.waitFor({ state: 'detached', timeout: 30_000 });
    expect(await adminRow.count()).toBe(1); // the admin's own shell goes on

    // The person whose session it was: who ended it, and why.
    const banner = oncall.getByTestId('ended-by');
    await banner.waitFor({ timeout: 30_000 });
    expect(await banner.textContent()).toContain('admin (admin) ended this session');
    expect(await oncall.getByTestId('end-reason').textContent()).toBe(REASON);
    await screenshot(oncall, 'sessions-ended-banner');

    // The close record: the code stays the code, who and why beside it.
    let close: { body: Record<string, unknown>; outcome: string } | undefined;
    const deadline = Date.now() + 60_000;
    while (!close && Date.now() < deadline) {
      const a = await call(admin, 'GET', `/api/audit?verb=cluster_shell_close&session_id=${victimId}`);
      close = (a.body as { events: { body: Record<string, unknown>; outcome: string }[] }).events[0];
      if (!close) await admin.waitForTimeout(500);
    }
    expect(close).toMatchObject({
      outcome: 'error',
      body: { close_reason: 'ended_by_admin', ended_by: 'admin', end_reason: REASON, tier: 'admin' },
    });

    // … and on the audit page.
    await admin.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Audit' }).click();
    await admin.getByLabel('verb').fill('cluster_shell_close');
    await admin.getByLabel('actor').fill('oncall');
    await admin.getByRole('button', { name: 'apply' }).click();
    const row = admin
      .getByRole('table', { name: 'audit events' })
      .getByRole('row')
      .filter({ hasText: 'ended_by_admin' })
      .first();
    await row.waitFor({ timeout: 30_000 });
    await row.getByRole('button', { name: /^details of / }).click();
    const ended = admin.getByTestId('audit-ended-by');
    await ended.waitFor();
    expect(await ended.textContent()).toBe(`Ended by admin with the reason ${REASON}`);
    await screenshot(admin, 'audit-ended-by-admin');
  });

  it('a refused open (a tier the cluster shell does not allow) is on the audit page with its code', async () => {
    await reader
      .getByRole('table', { name: 'clusters' })
      .getByRole('link', { name: 'local', exact: true })
      .click();
    await reader.getByTestId('shell-reason').waitFor();
    // The page offers no Shell to this tier; the API is asked as a client would.
    const open = await call(reader, 'POST', '/api/clusters/local/shell/sessions', {});
    expect(open).toMatchObject({ status: 403, body: { error: 'E_FORBIDDEN' } });
    expect((open.body as { message: string }).message).toContain(
      'your tier (read) may not open a cluster shell',
    );
    await reader.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Audit' }).click();
    await reader.getByLabel('verb').fill('cluster_shell_denied');
    await reader.getByRole('button', { name: 'apply' }).click();
    const row = reader
      .getByRole('table', { name: 'audit events' })
      .getByRole('row')
      .filter({ hasText: 'cluster_shell_denied' })
      .first();
    await row.waitFor({ timeout: 30_000 });
    const text = (await row.textContent()) ?? '';
    expect(text).toContain('E_FORBIDDEN');
    expect(text).toContain('reader');
    await row.getByRole('button', { name: /^details of / }).click();
    const refusal = reader.getByTestId('audit-refusal');
    await refusal.waitFor();
    expect(await refusal.textContent()).toContain('Refused with E_FORBIDDEN: your tier (read) may not open');
    await screenshot(reader, 'audit-denied-tier');
  });
});
