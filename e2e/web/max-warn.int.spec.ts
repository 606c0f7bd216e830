/**
 * The warning before a session's maximum length, in the browser: with the shortest maximum the
 * server allows (600 s) and a 590 s lead, the banner appears about 10 s into a cluster shell,
 * counts down, and the shell still works under it (the cut itself is tested in
 * e2e/server/max-warn.int.spec.ts with a shorter maximum).
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { hasPrompt, screenshot, typeLine, waitPill, waitTerminal } from './browser';
import { SignedInRig } from './oncall-rig';

describe('max-length warning in the browser', () => {
  const rig = new SignedInRig();
  let page: Page;

  beforeAll(async () => {
    ({ page } = await rig.start('web-max-warn', {
      agent: false,
      env: {
        PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS: '600',
        PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS: '600',
        PERISCOPE_CLUSTER_SHELL_MAX_SESSION_WARN_SECONDS: '590',
      },
    }));
  });

  afterAll(async () => {
    await rig.stop();
  });

  it('shows the banner with the time left before the cut, and the shell goes on', async () => {
    await page
      .getByRole('table', { name: 'clusters' })
      .getByRole('link', { name: 'local', exact: true })
      .click();
    await page.getByRole('button', { name: 'Shell', exact: true }).click();
    await waitTerminal(page, 'the prompt', hasPrompt, 90_000);
    const banner = page.getByTestId('max-warn');
    await banner.waitFor({ timeout: 60_000 });
    const text = (await banner.textContent()) ?? '';
    expect(text).toContain('maximum length and will close in');
    const [, mm, ss] = /close in (\d\d):(\d\d)/.exec(text) ?? [];
    const left = Number(mm) * 60 + Number(ss);
    expect(left).toBeGreaterThan(500);
    expect(left).toBeLessThanOrEqual(590);
    await waitPill(page, /^connected · /);
    await typeLine(page, 'echo still-$((40+2))');
    await waitTerminal(page, 'the echo', (t) => t.includes('still-42'));
    expect(await banner.isVisible()).toBe(true); // typing does not clear it
    await screenshot(page, 'max-warn');
  });
});
