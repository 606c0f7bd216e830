/**
 * `npm run smoke`: checks a running system (`npm start`, or any deployment with the dev login)
 * the way a person would: Chromium signs in as `admin`, opens a cluster shell on each cluster
 * given, runs `kubectl auth whoami` there, checks the answer names the operator and the tier,
 * exits the shell, and saves a screenshot of each terminal.
 *
 *   npm run smoke                                   # http://localhost:8080, local and local-agent
 *   PERISCOPE_URL=http://localhost:18080 npm run smoke -- local-agent
 */
import { join } from 'node:path';

import {
  ARTIFACTS,
  hasPrompt,
  launchBrowser,
  newPage,
  screenshot,
  signIn,
  statusPill,
  typeLine,
  waitPill,
  waitTerminal,
} from '../web/browser';

// The URL `npm start` prints: the server accepts terminal sockets only from its own origin.
const url = process.env['PERISCOPE_URL'] ?? 'http://localhost:8080';
const subject = process.env['PERISCOPE_SMOKE_USER'] ?? 'admin';
const clusters = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['local', 'local-agent'];

const say = (l: string): void => {
  process.stderr.write(`[smoke] ${l}\n`);
};

async function main(): Promise<void> {
  const browser = await launchBrowser();
  try {
    const page = await newPage(browser);
    const t0 = Date.now();
    await signIn(page, url, subject);
    say(`signed in to ${url} as ${subject}`);
    for (const cluster of clusters) {
      const opened = Date.now();
      await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Fleet' }).click();
      await page
        .getByRole('table', { name: 'clusters' })
        .getByRole('link', { name: cluster, exact: true })
        .click();
      await page.getByRole('heading', { level: 1, name: cluster }).waitFor();
      await page.getByRole('button', { name: 'Shell', exact: true }).click();
      await page.getByRole('tab', { name: new RegExp(`${cluster}\\s*shell`) }).waitFor();
      await waitTerminal(page, `the prompt on ${cluster}`, hasPrompt, 90_000).catch(async (err: unknown) => {
        const pill = await statusPill(page)
          .first()
          .textContent()
          .catch(() => null);
        throw new Error(`${(err as Error).message}\nstatus: ${pill ?? '(none)'}`);
      });
      say(`${cluster}: shell prompt after ${Date.now() - opened} ms`);
      await typeLine(page, 'kubectl auth whoami');
      const text = await waitTerminal(page, 'the whoami answer', (t) =>
        new RegExp(`Username\\s+${subject}`).test(t),
      );
      const groups = /Groups\s+(\[.*?\])/.exec(text)?.[1] ?? '(none)';
      say(`${cluster}: kubectl auth whoami → ${subject}, groups ${groups}`);
      await screenshot(page, `smoke-${cluster}`);
      await typeLine(page, 'exit');
      await waitPill(page, /^closed · exit 0$/, 30_000);
      say(`${cluster}: exit → closed · exit 0`);
    }
    say(`all ${clusters.length} shells worked in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    say(`screenshots: ${join(ARTIFACTS, 'smoke-*.png')}`);
  } finally {
    await browser.close();
  }
}

main().catch((err: unknown) => {
  say(`FAILED: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
