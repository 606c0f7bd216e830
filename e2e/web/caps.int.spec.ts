/**
 * Refusals in the browser: the per-user cap (429 E_CAP_USER lists the active sessions; closing one
 * lets the new one open; the refusal is on the audit page) and a server with the cluster shell off
 * (no Shell button).
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RunningSystem } from '../system/system';
import {
  hasPrompt,
  launchBrowser,
  newPage,
  screenshot,
  signIn,
  startLoggedSystem,
  waitPill,
  waitTerminal,
  maybe,
} from './browser';

describe('cluster shell refusals in the browser', () => {
  let browser: Browser;

  beforeAll(async () => {
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await maybe(browser)?.close();
  });

  describe('with one cluster shell per user', () => {
    let system: RunningSystem;
    let page: Page;

    beforeAll(async () => {
      system = await startLoggedSystem('web-caps', {
        agent: false,
        env: { PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '1' },
      });
      page = await newPage(browser);
      await signIn(page, system.url, 'admin');
    });

    afterAll(async () => {
      await maybe(page)?.context().close();
      await maybe(system)?.stop();
    });

    it('shows E_CAP_USER with the active session; closing it opens the new one', async () => {
      await page
        .getByRole('table', { name: 'clusters' })
        .getByRole('link', { name: 'local', exact: true })
        .click();
      const shell = page.getByRole('button', { name: 'Shell', exact: true });
      await shell.click();
      await waitTerminal(page, 'the first prompt', hasPrompt, 90_000);
      await shell.click();
      const refusal = page.locator('.refusal');
      await refusal.waitFor();
      expect(await refusal.textContent()).toContain('E_CAP_USER');
      const sessions = page.getByRole('table', { name: 'your active sessions' });
      expect(await sessions.getByRole('row').count()).toBe(2); // header + the first session
      await screenshot(page, 'error-cap');
      await sessions.getByRole('button', { name: 'close it and retry' }).click();
      // the second tab now holds a live shell; the first one was ended
      await waitTerminal(page, 'the second prompt', hasPrompt, 90_000);
      await waitPill(page, /^connected · /);
      await page.getByRole('tab').first().click();
      await waitPill(page, /^closed · /, 30_000);
    });

    it("shows the cluster's effective shell settings and the caller's mode on the cluster page", async () => {
      // still on the cluster page of the test before
      const line = page.getByTestId('shell-settings');
      await line.waitFor();
      expect(await line.textContent()).toMatch(
        /^cluster shell \(yours: bash\): bash for admin · idle cut after 20 min · at most 10 at once · image \S+$/,
      );
    });

    it('lists the refused open on the audit page with its code', async () => {
      await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Audit' }).click();
      await page.getByLabel('verb').fill('cluster_shell_denied');
      await page.getByRole('button', { name: 'apply' }).click();
      const row = page
        .getByRole('table', { name: 'audit events' })
        .getByRole('row')
        .filter({ hasText: 'cluster_shell_denied' })
        .first();
      await row.waitFor({ timeout: 30_000 });
      expect(await row.textContent()).toContain('E_CAP_USER');
      await row.getByRole('button', { name: /^details of / }).click();
      const refusal = page.getByTestId('audit-refusal');
      await refusal.waitFor();
      expect(await refusal.textContent()).toContain('(limit 1)');
      await screenshot(page, 'audit-denied');
    });
  });

  describe('on a server with the cluster shell off', () => {
    let system: RunningSystem;

    beforeAll(async () => {
      system = await startLoggedSystem('web-shell-off', {
        agent: false,
        env: { PERISCOPE_CLUSTER_SHELL_ENABLED: 'false' },
      });
    });

    afterAll(async () => {
      await maybe(system)?.stop();
    });

    it('has no Shell button and says why', async () => {
      const page = await newPage(browser);
      await signIn(page, system.url, 'admin');
      await page
        .getByRole('table', { name: 'clusters' })
        .getByRole('link', { name: 'local', exact: true })
        .click();
      const reason = page.getByTestId('shell-reason');
      await reason.waitFor();
      expect(await reason.textContent()).toContain('disabled on the server');
      expect(await page.getByTestId('shell-settings').count()).toBe(0);
      expect(await page.getByRole('button', { name: 'Shell', exact: true }).count()).toBe(0);
      await page.context().close();
    });
  });
});
