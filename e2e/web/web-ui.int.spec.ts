/**
 * The web UI in a real browser (Debian's Chromium) against the real system: control plane, server
 * serving the built UI, and an agent. Needs `npm run build` first (server, agent and web dist).
 */
import type { Browser, Dialog, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RunningSystem } from '../system/system';
import {
  cspViolations,
  dropConnections,
  hasPrompt,
  launchBrowser,
  newPage,
  receivedBytes,
  screenshot,
  signIn,
  signOut,
  startLoggedSystem,
  statusPill,
  typeLine,
  waitPill,
  waitTerminal,
  maybe,
} from './browser';

const APP_NS = 'web-apps';

describe('web UI against the full system (direct and agent clusters)', () => {
  let system: RunningSystem;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    [system, browser] = await Promise.all([startLoggedSystem('web-ui'), launchBrowser()]);
    await system.cluster.createNamespace(APP_NS);
    await system.cluster.apply(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'app', namespace: APP_NS },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'main', image: 'busybox', command: ['sleep', '3600'] }],
        },
      }),
    );
    page = await newPage(browser);
  });

  afterAll(async () => {
    await maybe(browser)?.close();
    await maybe(system)?.stop();
  });

  /**
   * Closes every terminal tab, then waits until the server has finished those sessions' teardown
   * (their cap slots are held until then), so the next test starts under the caps.
   */
  async function closeAllTabs(): Promise<void> {
    for (;;) {
      const close = page.getByRole('button', { name: /^close .+ on / });
      if ((await close.count()) === 0) break;
      await close.first().click();
    }
    await expect
      .poll(
        () =>
          page.evaluate(
            async () =>
              (
                (await (await fetch('/api/sessions')).json()) as { sessions: { subject: string }[] }
              ).sessions.filter((x) => x.subject === 'admin').length,
          ),
        { timeout: 60_000, interval: 100 },
      )
      .toBe(0);
  }

  async function openClusterPage(name: string): Promise<void> {
    await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Fleet' }).click();
    await page.getByRole('table', { name: 'clusters' }).getByRole('link', { name, exact: true }).click();
    await page.getByRole('heading', { level: 1, name }).waitFor();
  }

  it('signs in with the dev user picker and shows the fleet', async () => {
    await page.goto(system.url);
    await page.getByRole('heading', { name: 'Sign in to Periscope' }).waitFor();
    await screenshot(page, 'sign-in');
    await signIn(page, system.url, 'admin');
    const who = page.getByTestId('whoami');
    await expect.poll(() => who.textContent()).toContain('admin');
    const table = page.getByRole('table', { name: 'clusters' });
    await table.getByRole('link', { name: 'local', exact: true }).waitFor();
    const agentRow = table.getByRole('row').filter({ hasText: 'local-agent' });
    await agentRow.getByText(/agent connected/).waitFor();
    expect(
      await table
        .getByRole('row')
        .filter({ hasText: /^local\s*kubeconfig/ })
        .textContent(),
    ).toContain('direct');
    // search narrows the list
    await page.getByLabel('search').fill('agent');
    await expect.poll(() => table.getByRole('link').count()).toBe(1);
    await page.getByLabel('search').fill('');
    await expect.poll(() => table.getByRole('link').count()).toBe(2);
    // the admin tier sees the agents page in the navigation
    await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Agents' }).waitFor();
    await screenshot(page, 'fleet');
  });

  /**
   * The cluster's own audit log joins what the browser did: the shell's kubectl calls carry the
   * session id (impersonation extra); through the agent, the exec that attached the shell carries
   * the tunnel stream's request id as its Audit-ID, and both tunnel ends know that request id.
   */
  async function expectJoinedInAuditLogs(cluster: string, whoami: string): Promise<void> {
    const sid = /audit\.periscope\.io\/session-id\s+\[([0-9a-f-]{36})\]/.exec(whoami)?.[1];
    expect(sid).toBeDefined();
    const events = system.cluster.auditEvents();
    const kubectl = events.filter(
      (e) => e.impersonatedUser?.extra?.['audit.periscope.io/session-id']?.includes(sid!) === true,
    );
    expect(kubectl.length).toBeGreaterThan(0); // kubectl auth whoami, as admin in the admin tier
    expect(kubectl[0]!.impersonatedUser).toMatchObject({ username: 'admin' });
    if (cluster !== 'local-agent') return;
    let attach: (typeof events)[number] | undefined;
    await expect
      .poll(() => {
        attach = system.cluster
          .auditEvents()
          .find(
            (e) =>
              e.objectRef?.subresource === 'exec' &&
              e.objectRef.name === `periscope-shell-${sid!}` &&
              /[?&]command=periscope-shell(&|$)/.test(e.requestURI),
          );
        return attach !== undefined;
      })
      .toBe(true);
    const res = await page.request.get(`${system.url}/api/agents/local-agent/requests/${attach!.auditID}`);
    expect(res.status()).toBe(200);
    const joined = (await res.json()) as {
      server: { op: string; rid: string } | null;
      agent: { op: string; rid: string } | null;
    };
    expect(joined.server).toMatchObject({ op: 'exec', rid: attach!.auditID });
    expect(joined.agent).toMatchObject({ op: 'exec', rid: attach!.auditID });
  }

  for (const cluster of ['local', 'local-agent']) {
    it(`opens a cluster shell on ${cluster}, runs kubectl as the operator, exits with 0`, async () => {
      await openClusterPage(cluster);
      if (cluster === 'local') await screenshot(page, 'cluster');
      await page.getByRole('button', { name: 'Shell', exact: true }).click();
      const tab = page.getByRole('tab', { name: new RegExp(`${cluster}\\s*shell`) });
      await tab.waitFor();
      await waitTerminal(page, 'the prompt', hasPrompt, 90_000);
      await waitPill(page, /^connected · /);
      await typeLine(page, 'kubectl auth whoami');
      const text = await waitTerminal(page, 'the whoami answer', (t) => /Username\s+admin/.test(t), 60_000);
      expect(text).toMatch(/Groups\s+\[.*periscope-tier:admin/);
      await expectJoinedInAuditLogs(cluster, text);
      // the info expander describes a cluster-scoped shell
      await page.getByRole('button', { name: 'info', exact: true }).click();
      const details = page.locator('dl[aria-label="session details"]');
      await details.waitFor();
      expect(await details.textContent()).toContain('cluster shell');
      expect(await details.textContent()).toContain('(cluster-scoped)');
      expect(await details.textContent()).toContain('bash');
      if (cluster === 'local') await screenshot(page, 'terminal');
      await page.getByRole('button', { name: 'info', exact: true }).click();
      await typeLine(page, 'exit');
      await waitPill(page, /^closed · exit 0$/, 60_000);
      expect(await statusPill(page).textContent()).toBe('closed · exit 0');
      await closeAllTabs();
    });
  }

  it('lists the closed session with its commands on the audit page', async () => {
    await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Audit' }).click();
    await page.getByLabel('verb').fill('cluster_shell_close');
    await page.getByLabel('cluster', { exact: true }).fill('local');
    await page.getByRole('button', { name: 'apply' }).click();
    const table = page.getByRole('table', { name: 'audit events' });
    const row = table.getByRole('row').filter({ hasText: 'cluster_shell_close' }).first();
    await row.waitFor({ timeout: 30_000 });
    expect(await row.textContent()).toContain('admin');
    await row.getByRole('button', { name: /^details of / }).click();
    const commands = page.getByRole('table', { name: 'commands of the session' });
    await commands.waitFor();
    expect(await commands.textContent()).toContain('kubectl auth whoami');
    await screenshot(page, 'audit');
  });

  it('shows agents, mints an onboarding token with the helm command, looks up a request id', async () => {
    await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Agents' }).click();
    const table = page.getByRole('table', { name: 'agents' });
    await table.getByRole('row').filter({ hasText: 'local-agent' }).getByText('connected').waitFor();
    await page.getByRole('button', { name: 'mint a registration token' }).click();
    await page.getByTestId('agent-token').waitFor();
    const helm = (await page.getByTestId('helm-command').textContent()) ?? '';
    expect(helm).toContain('helm install periscope-agent ./charts/periscope-agent');
    expect(helm).toContain('--from-literal=token=psc_');
    expect(helm).toContain('--set agent.clusterName=local-agent');
    expect(helm).toContain('--set agent.registrationToken.existingSecret=periscope-agent-registration');
    expect(helm).toContain(`--set agent.registrationURL=${system.url}`);
    await page.getByLabel('request id').fill('no-such-request');
    await page.getByRole('button', { name: 'look up' }).click();
    await page.getByText(/no record of request no-such-request/).waitFor();
    await screenshot(page, 'agents');
  });

  it('opens a pod exec tab from the pods list', async () => {
    await openClusterPage('local');
    await page.getByLabel('namespace').fill(APP_NS);
    await page.getByRole('button', { name: 'apply' }).click();
    await page.getByRole('button', { name: 'Open shell in app/main' }).click();
    await page.getByRole('tab', { name: /app\/main/ }).waitFor();
    await waitPill(page, /^connected · /, 60_000);
    await typeLine(page, 'echo pod-$((40+2))');
    await waitTerminal(page, 'the echo', (t) => t.includes('pod-42'), 30_000);
    await page.getByRole('button', { name: 'info', exact: true }).click();
    const details = (await page.locator('dl[aria-label="session details"]').textContent()) ?? '';
    expect(details).toContain('pod exec');
    expect(details).toContain(APP_NS);
    expect(details).toContain('main');
    await page.getByRole('button', { name: 'info', exact: true }).click();
    await typeLine(page, 'exit');
    await waitPill(page, /^closed · exit 0$/, 30_000);
    await closeAllTabs();
  });

  it('resumes the same terminal after a forced network drop, without lost or repeated output', async () => {
    await openClusterPage('local');
    await page.getByRole('button', { name: 'Shell', exact: true }).click();
    await waitTerminal(page, 'the prompt', hasPrompt, 90_000);
    await typeLine(page, 'for i in $(seq 1 60); do echo "n=$i"; sleep 0.05; done; echo DONE-$((6*7))');
    await waitTerminal(page, 'the first lines', (t) => t.includes('n=5'), 30_000);
    const before = await receivedBytes(page);
    // Close the socket from page JS without the protocol's close frame: what a network failure
    // looks like to the server. (page.context().setOffline does not reliably cut open sockets.)
    expect(await dropConnections(page)).toBe(1);
    await waitPill(page, /^reconnecting · /, 10_000);
    await waitPill(page, /^connected · /, 60_000);
    const text = await waitTerminal(page, 'the end of the loop', (t) => t.includes('DONE-42'), 60_000);
    for (let i = 1; i <= 60; i++) {
      const lines = text.split('\n').filter((l) => l.trim() === `n=${i}`);
      expect(lines, `line n=${i}`).toHaveLength(1);
    }
    expect(await receivedBytes(page)).toBeGreaterThan(before);
    await typeLine(page, 'exit');
    await waitPill(page, /^closed · exit 0$/, 30_000);
    await closeAllTabs();
  });

  it('hides the Shell button from a read-tier operator and says why', async () => {
    await signOut(page);
    await signIn(page, system.url, 'reader');
    expect(
      await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Agents' }).count(),
    ).toBe(0);
    await openClusterPage('local');
    // The server offers the cluster shell per person: no button for this tier, and the reason.
    await page.getByTestId('shell-reason').waitFor();
    expect(await page.getByRole('button', { name: 'Shell', exact: true }).count()).toBe(0);
    expect(await page.getByTestId('shell-reason').textContent()).toMatch(
      /your tier \(read\) may not open a cluster shell/,
    );
    await screenshot(page, 'no-shell-for-tier');
    // Pod exec is allowed only what `view` allows: the pod is listed, exec into it is refused by
    // the cluster (through the agent here), with what to do.
    await openClusterPage('local-agent');
    await page.getByLabel('namespace').fill(APP_NS);
    await page.getByRole('button', { name: 'apply' }).click();
    await page.getByRole('button', { name: 'Open shell in app/main' }).click();
    const refusal = page.getByRole('alert').filter({ hasText: 'Your tier may not exec into this pod' });
    await refusal.waitFor({ timeout: 60_000 });
    expect(await refusal.textContent()).toContain('E_FORBIDDEN');
    await screenshot(page, 'pod-exec-refused-for-tier');
    await closeAllTabs();
    await signOut(page);
    await signIn(page, system.url, 'admin');
  });

  it('runs shells on both clusters at once, each answering in its own tab', async () => {
    for (const cluster of ['local', 'local-agent']) {
      await openClusterPage(cluster);
      await page.getByRole('button', { name: 'Shell', exact: true }).click();
      await page.getByRole('tab', { name: new RegExp(`${cluster}\\s*shell`) }).waitFor();
      await waitTerminal(page, `the prompt on ${cluster}`, hasPrompt, 90_000);
    }
    for (const cluster of ['local', 'local-agent']) {
      await page.getByRole('tab', { name: new RegExp(`${cluster}\\s*shell`) }).click();
      await typeLine(page, `echo on-$((1+1))-${cluster}`);
      await waitTerminal(page, `the echo on ${cluster}`, (t) => t.includes(`on-2-${cluster}`), 30_000);
    }
    const sessions = await page.request.get(`${system.url}/api/sessions`);
    const live = ((await sessions.json()) as { sessions: { cluster: string }[] }).sessions;
    expect(live.map((x) => x.cluster).sort()).toEqual(['local', 'local-agent']);
    await closeAllTabs();
  });

  it('says "session ended" when a dropped session cannot be resumed', async () => {
    await openClusterPage('local');
    await page.getByRole('button', { name: 'Shell', exact: true }).click();
    await waitTerminal(page, 'the prompt', hasPrompt, 90_000);
    await page.getByRole('button', { name: 'info', exact: true }).click();
    const details = (await page.locator('dl[aria-label="session details"]').textContent()) ?? '';
    const id = /session id:?\s*([0-9a-f-]{36})/.exec(details)?.[1];
    expect(id).toBeDefined();
    await page.getByRole('button', { name: 'info', exact: true }).click();
    // Drop the socket, and end the session on the server before the client is back.
    expect(await dropConnections(page)).toBe(1);
    const status = await page.evaluate(
      async (sid) => (await fetch(`/api/sessions/${sid}`, { method: 'DELETE' })).status,
      id ?? '',
    );
    expect(status).toBe(204);
    await waitPill(page, /^session ended/, 60_000);
    await page.getByRole('button', { name: 'open a new session' }).waitFor();
    await screenshot(page, 'error-session-gone');
    await closeAllTabs();
  });

  it('renders the fleet in the dark theme', async () => {
    const dark = await newPage(browser, { dark: true });
    await signIn(dark, system.url, 'admin');
    await dark
      .getByRole('table', { name: 'clusters' })
      .getByRole('link', { name: 'local', exact: true })
      .waitFor();
    expect(
      await dark.evaluate(
        () =>
          (globalThis as { document?: { documentElement: { dataset: Record<string, string> } } }).document
            ?.documentElement.dataset['theme'],
      ),
    ).toBe('dark');
    await screenshot(dark, 'fleet-dark');
    await dark.context().close();
  });

  it('warns when opened at an address the server does not accept terminals from, and links the right one', async () => {
    const other = await newPage(browser);
    const elsewhere = system.url.replace('//localhost:', '//127.0.0.1:');
    expect(elsewhere).not.toBe(system.url);
    await other.goto(`${elsewhere}/audit`);
    const warning = other.locator('.origin-warning');
    await warning.waitFor();
    expect(await warning.textContent()).toContain(`Terminals will not connect from ${elsewhere}`);
    expect(await warning.getByRole('link').getAttribute('href')).toBe(`${system.url}/audit`);
    // at the right address there is no warning
    await page.goto(system.url);
    await page.getByTestId('whoami').waitFor();
    expect(await page.locator('.origin-warning').count()).toBe(0);
    await other.context().close();
  });

  it('runs every page and terminal above under its Content-Security-Policy without a violation, and refuses to be framed', async () => {
    const res = await page.goto(`${system.url}/audit`);
    const csp = (await res?.allHeaders())?.['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect((await res?.allHeaders())?.['x-content-type-options']).toBe('nosniff');
    await page.getByTestId('whoami').waitFor();
    // Every page so far: sign-in, fleet, cluster pages, terminals typing and resuming, audit,
    // agents, the dark theme. Chromium reports each blocked script, style or connection.
    expect(cspViolations()).toEqual([]);
    const framer = await newPage(browser);
    await framer.setContent(`<iframe title="periscope" src="${system.url}/"></iframe>`);
    await expect
      .poll(() => cspViolations(framer).some((v) => v.includes('frame-ancestors')), { timeout: 15_000 })
      .toBe(true);
    expect(await framer.frameLocator('iframe').getByTestId('whoami').count()).toBe(0);
    await framer.context().close();
  });

  it('gives an ordinary page no test hooks; only pages the harness opens ask for them', async () => {
    // the harness's page (newPage asks for the hooks before the page's scripts run) has them,
    // so the check below can fail
    expect(
      await page.evaluate(() => typeof (globalThis as { __periscopeTest?: unknown }).__periscopeTest),
    ).toBe('object');
    const context = await browser.newContext();
    try {
      const plain = await context.newPage();
      await signIn(plain, system.url, 'admin');
      await plain.getByTestId('whoami').waitFor();
      expect(await plain.evaluate(() => '__periscopeTest' in globalThis)).toBe(false);
    } finally {
      await context.close();
    }
  });

  it('revokes an agent from the Agents page after a confirmation; its cluster goes offline', async () => {
    await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Agents' }).click();
    const row = page
      .getByRole('table', { name: 'agents' })
      .getByRole('row')
      .filter({ hasText: 'local-agent' });
    await row.getByText('connected').waitFor();
    // The first confirmation is dismissed (nothing happens), the second accepted.
    const dialogs: string[] = [];
    const answer = (d: Dialog): void => {
      dialogs.push(d.message());
      void (dialogs.length === 1 ? d.dismiss() : d.accept());
    };
    page.on('dialog', answer);
    try {
      await row.getByRole('button', { name: 'revoke the agent of local-agent' }).click();
      await expect.poll(() => dialogs.length).toBe(1);
      await page.waitForTimeout(500);
      await row.locator('.badge', { hasText: /^connected$/ }).waitFor();
      await row.getByRole('button', { name: 'revoke the agent of local-agent' }).click();
      await page
        .getByTestId('agents-notice')
        .filter({ hasText: 'Revoked the agent of local-agent' })
        .waitFor();
    } finally {
      page.off('dialog', answer);
    }
    expect(dialogs).toHaveLength(2);
    expect(dialogs[1]).toContain('open sessions on local-agent end');
    await row.locator('.badge', { hasText: 'revoked' }).waitFor();
    expect(await row.getByRole('button', { name: 'revoke the agent of local-agent' }).isDisabled()).toBe(
      true,
    );
    await screenshot(page, 'agent-revoked');
    const audit = await page.request.get(`${system.url}/api/audit?verb=agent_revoke`);
    const events = ((await audit.json()) as { events: { actor: string; cluster: string }[] }).events;
    expect(events[0]).toMatchObject({ actor: 'admin', cluster: 'local-agent' });
    await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Fleet' }).click();
    const agentRow = page
      .getByRole('table', { name: 'clusters' })
      .getByRole('row')
      .filter({ hasText: 'local-agent' });
    await agentRow.getByText(/agent disconnected/).waitFor();
  });
});
