/**
 * Browser helpers for the web UI tests: Debian's Chromium driven by playwright-core, the real
 * system from ../system/system.ts, sign-in, terminal reads through the page's test hooks, and
 * screenshots into e2e/web/artifacts/ (gitignored; the good ones are copied to docs/images/).
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { chromium, type Browser, type Dialog, type Page } from 'playwright-core';

import { startSystem, type RunningSystem, type SystemOptions } from '../system/system';

export const ARTIFACTS = join(__dirname, 'artifacts');

/** For afterAll hooks: a value beforeAll may not have set when it failed. */
export const maybe = <T>(v: T): T | undefined => v;

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env['PERISCOPE_CHROMIUM'] ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
  });
}

/** The system with its server and agent output in artifacts/<name>.log. */
export async function startLoggedSystem(name: string, opts: SystemOptions = {}): Promise<RunningSystem> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = join(ARTIFACTS, `${name}.log`);
  return startSystem({
    ...opts,
    log: (l) => {
      appendFileSync(file, `[start] ${l}\n`);
    },
    processLog: (p, l) => {
      appendFileSync(file, `[${p}] ${l}\n`);
    },
    onUnexpectedExit: (p, code) => {
      appendFileSync(file, `[start] ${p} exited unexpectedly (${code ?? 'signal'})\n`);
    },
  });
}

/** Content-Security-Policy violations Chromium reported, per page and in total. */
const violations = new WeakMap<Page, string[]>();
const allViolations: string[] = [];

/** The CSP violations Chromium reported on this page (console), or on every page so far. */
export function cspViolations(page?: Page): string[] {
  return page === undefined ? [...allViolations] : [...(violations.get(page) ?? [])];
}

export async function newPage(browser: Browser, opts: { dark?: boolean } = {}): Promise<Page> {
  const context = await browser.newContext({
    viewport: { width: 1366, height: 860 },
    colorScheme: opts.dark ? 'dark' : 'light',
  });
  // the page's test hooks (apps/web/src/terminal/store.ts), asked for before its scripts run
  await context.addInitScript(() => {
    (globalThis as { __periscopeTestHooks?: boolean }).__periscopeTestHooks = true;
  });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const seen: string[] = [];
  violations.set(page, seen);
  page.on('console', (m) => {
    const text = m.text();
    if (/Content Security Policy/i.test(text)) {
      seen.push(text);
      allViolations.push(`${page.url()}: ${text}`);
    }
  });
  return page;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

/** Signs in through the sign-in screen's dev user picker. */
export async function signIn(page: Page, url: string, subject: string): Promise<void> {
  await page.goto(url);
  await page.getByRole('button', { name: new RegExp(`Sign in as ${subject}\\b`) }).click();
  await page
    .getByTestId('whoami')
    .locator('strong', { hasText: new RegExp(`^${subject}$`) })
    .waitFor();
}

export async function signOut(page: Page): Promise<void> {
  // The confirmation appears only while terminals are open; never leave the handler behind
  // for a later dialog.
  const accept = (d: Dialog): void => void d.accept();
  page.once('dialog', accept);
  try {
    await page.getByRole('button', { name: 'sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Periscope' }).waitFor();
  } finally {
    page.off('dialog', accept);
  }
}

/** The page's test hooks (apps/web/src/terminal/store.ts); typed here without the DOM lib. */
export interface TestHooks {
  dropConnections: () => number;
  terminalText: (id?: string) => string;
  receivedBytes: (id?: string) => number;
}
export function terminalText(page: Page, tabId?: string): Promise<string> {
  return page.evaluate(
    (id) => (globalThis as { __periscopeTest?: TestHooks }).__periscopeTest?.terminalText(id) ?? '',
    tabId,
  );
}

/** Drops every terminal socket of the page as a network failure would; answers how many. */
export function dropConnections(page: Page): Promise<number> {
  return page.evaluate(
    () => (globalThis as { __periscopeTest?: TestHooks }).__periscopeTest?.dropConnections() ?? 0,
  );
}

export function receivedBytes(page: Page): Promise<number> {
  return page.evaluate(
    () => (globalThis as { __periscopeTest?: TestHooks }).__periscopeTest?.receivedBytes() ?? 0,
  );
}

/** Waits until the active terminal's text satisfies `test`; answers that text. */
export async function waitTerminal(
  page: Page,
  what: string,
  test: (text: string) => boolean,
  timeoutMs = 60_000,
): Promise<string> {
  const end = Date.now() + timeoutMs;
  let text = '';
  for (;;) {
    text = await terminalText(page);
    if (test(text)) return text;
    if (Date.now() > end) {
      const name = `timeout-${what.replace(/[^\w-]+/g, '-').slice(0, 60)}`;
      await screenshot(page, name).catch(() => undefined);
      const alerts = await page
        .getByRole('alert')
        .allTextContents()
        .catch(() => []);
      throw new Error(
        `timed out waiting for ${what} (screenshot artifacts/${name}.png); alerts: ${JSON.stringify(alerts)}; the terminal shows:\n${text.slice(-2000)}`,
      );
    }
    await page.waitForTimeout(200);
  }
}

/** A shell prompt on the last line (bash: `…$ ` or `…# `). */
export const hasPrompt = (text: string): boolean => /[$#>]\s*$/.test(text.trimEnd() === '' ? '' : text);

/** Types a command line into the focused terminal. */
export async function typeLine(page: Page, line: string): Promise<void> {
  await page.locator('.term-view:not([hidden]) .term-host').click();
  await page.keyboard.type(line, { delay: 5 });
  await page.keyboard.press('Enter');
}

export function statusPill(page: Page) {
  return page.getByTestId('status-pill');
}

export async function waitPill(page: Page, re: RegExp, timeoutMs = 60_000): Promise<void> {
  await statusPill(page).filter({ hasText: re }).first().waitFor({ timeout: timeoutMs });
}
