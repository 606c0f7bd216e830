/**
 * What a person sees in a real browser (Debian's Chromium) when an agent is refused at its
 * handshake and when a live terminal ends with its sign-in (issue 17): the real server serving the
 * built UI (`npm run build` first), a real OpenID provider (e2e/support/oidc-idp.ts), a pod exec into
 * a real pod, and a hostile agent with a valid certificate on the real mTLS tunnel.
 */
import 'reflect-metadata';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { RPC_EVENT } from '@periscope/protocol';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { io, type Socket } from 'socket.io-client';
import msgpackParser from 'socket.io-msgpack-parser';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { newKeyAndCsr } from '../../apps/agent/src/identity/agent-keys';
import { register } from '../../apps/agent/src/identity/registration';
import { TestClusterClient } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { signIn as idpSignIn, startIdp, type Idp } from '../support/oidc-idp';
import { startExecPod, startTestServer, testServerConfig, writeConfigDir } from '../support/test-server';
import { until } from '../support/wait';
import {
  cspViolations,
  launchBrowser,
  maybe,
  newPage,
  screenshot,
  typeLine,
  waitPill,
  waitTerminal,
} from './browser';

const cluster = new TestClusterClient(inject('cluster'));
const ns = `web-login-${Date.now().toString(36)}`;

describe('the browser shows why: an agent refused at its hello, terminals ended by sign-out and tier change', () => {
  let idp: Idp;
  let server: NestExpressApplication;
  let browser: Browser;
  let periscope: string;
  let tunnelPort: number;
  const contexts: BrowserContext[] = [];
  const sockets: Socket[] = [];

  beforeAll(async () => {
    // Every tier may exec here: what ends a session below is Periscope, not RBAC.
    await startExecPod(
      cluster,
      ns,
      ['read', 'maintain', 'admin'].map((tier) => ({ tier, role: 'cluster-admin', name: `tier-${tier}` })),
    );

    const port = await freePort();
    tunnelPort = await freePort();
    periscope = `http://127.0.0.1:${String(port)}`;
    idp = await startIdp(periscope, {
      root: { email: 'root@example.com', groups: ['platform-admins'] },
      alice: { email: 'alice@example.com', groups: ['sre'] },
      carol: { email: 'carol@example.com', groups: ['sre'] },
    });
    const dir = writeConfigDir('web-login', cluster.info.adminKubeconfig, { oidc: idp }, [
      `{ name: lab, backend: kubeconfig, kubeconfigPath: ${cluster.info.adminKubeconfig} }`,
      '{ name: edge, backend: agent }',
    ]);
    let started: { server: NestExpressApplication };
    [started, browser] = await Promise.all([
      startTestServer(
        testServerConfig(dir, {
          PERISCOPE_AUTH_MODE: 'oidc',
          PERISCOPE_OIDC_CLIENT_SECRET: idp.clientSecret,
          PERISCOPE_CLUSTER_SHELL_ENABLED: 'false',
          PERISCOPE_PUBLIC_URL: periscope,
          PERISCOPE_METRICS_PORT: '0',
          PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
          PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${String(tunnelPort)}`,
        }),
        port,
      ),
      launchBrowser(),
    ]);
    server = started.server;
  });

  afterAll(async () => {
    for (const s of sockets) s.close();
    for (const c of contexts) await c.close().catch(() => undefined);
    await maybe(browser)?.close();
    await maybe(server)?.close();
    await maybe(idp)?.stop();
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
  });

  /**
   * A browser tab signed in as `user`: the provider's login and consent pages walked as a person
   * would (oidc-idp.ts), then the session cookie handed to Chromium. More tabs come from the
   * answered page's context (one cookie jar, as tabs of one browser share it).
   */
  async function signedInTab(user: string): Promise<Page> {
    const jar = (await idpSignIn(periscope, idp, user, '/')).jar(periscope);
    expect(jar.has('periscope_session')).toBe(true);
    const page = await newPage(browser);
    contexts.push(page.context());
    await page
      .context()
      .addCookies([...jar].map(([name, value]) => ({ name, value, url: periscope, httpOnly: true })));
    await page.goto(periscope);
    await page
      .getByTestId('whoami')
      .locator('strong', { hasText: new RegExp(`^${user}$`) })
      .waitFor();
    return page;
  }

  /** Opens a pod exec of app/main from the cluster page and waits until its shell echoes. */
  async function openPodShell(page: Page): Promise<void> {
    await page.goto(`${periscope}/clusters/lab`);
    await page.getByRole('heading', { level: 1, name: 'lab' }).waitFor();
    await page.getByLabel('namespace').fill(ns);
    await page.getByRole('button', { name: 'apply' }).click();
    await page.getByRole('button', { name: 'Open shell in app/main' }).click();
    await page.getByRole('tab', { name: /app\/main/ }).waitFor();
    await waitPill(page, /^connected · /, 60_000);
    await typeLine(page, 'echo live-$((40+2))');
    await waitTerminal(page, 'the echo', (t) => t.includes('live-42'), 30_000);
  }

  /** The terminal's error banner, once it shows `code`; answers its text. */
  async function errorBanner(page: Page, code: string): Promise<string> {
    const banner = page.getByRole('alert').filter({ hasText: code });
    await banner.waitFor({ timeout: 30_000 });
    return (await banner.textContent()) ?? '';
  }

  it('a cluster whose agent sends a hello of the wrong shape shows "agent unavailable" with the reason, on the fleet and the cluster page', async () => {
    const root = await signedInTab('root');
    // A hostile agent with a real registration (token minted by an admin, its own key and CSR).
    const minted = await root.evaluate(async () => {
      const r = await fetch('/api/agents/tokens', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ cluster: 'edge' }),
      });
      return { status: r.status, body: (await r.json()) as { token?: string } };
    });
    expect(minted.status).toBe(201);
    const { keyPem, csrPem } = await newKeyAndCsr('edge');
    const reg = await register(periscope, { token: String(minted.body.token), cluster: 'edge', csr: csrPem });
    const socket = io(`https://127.0.0.1:${String(tunnelPort)}/agent`, {
      transports: ['websocket'],
      parser: msgpackParser,
      reconnection: false,
      cert: reg.certificate,
      key: keyPem,
      ca: reg.caBundle,
      rejectUnauthorized: true,
    });
    sockets.push(socket);
    let dropped = false;
    socket.on('disconnect', () => (dropped = true));
    socket.on('connect_error', () => (dropped = true));
    socket.on(RPC_EVENT, (req: { op?: string }, ack: (r: unknown) => void) => {
      if (typeof ack !== 'function') return;
      // An agent whose hello has the wrong shape: clusterShell is not an object.
      ack(
        req.op === 'hello'
          ? {
              ok: true,
              result: { cluster: 'edge', version: '0.0.1', certNotAfter: 'x', clusterShell: 'yes' },
            }
          : { ok: true, result: {} },
      );
    });
    await until('the server to drop the hostile agent', () => dropped, 30_000);

    const api = (await root.evaluate(async () => (await fetch('/api/clusters')).json())) as {
      clusters: { name: string; connection: { state: string; reason?: string } }[];
    };
    const edge = api.clusters.find((c) => c.name === 'edge')?.connection;
    expect(edge?.state).toBe('unavailable');
    expect(edge?.reason).toMatch(/hello.*clusterShell/);
    const shown = `agent unavailable: ${String(edge?.reason)}`;

    await root.goto(periscope);
    const row = root.getByRole('table', { name: 'clusters' }).getByRole('row').filter({ hasText: 'edge' });
    const badge = row.getByTestId('agent-unavailable');
    await badge.waitFor();
    expect((await badge.textContent())?.trim()).toBe(shown);
    expect(await badge.getAttribute('title')).toBe(edge?.reason);
    await screenshot(root, 'agent-unavailable-fleet');

    await row.getByRole('link', { name: 'edge', exact: true }).click();
    await root.getByRole('heading', { level: 1, name: 'edge' }).waitFor();
    expect((await root.getByTestId('agent-unavailable').textContent())?.trim()).toBe(shown);
    expect(cspViolations(root)).toEqual([]);
  });

  it('signing out in another tab ends the live terminal with E_SIGNED_OUT, and the tab says so', async () => {
    const tab = await signedInTab('alice');
    await openPodShell(tab);
    const other = await tab.context().newPage();
    await other.goto(periscope);
    other.once('dialog', (d) => void d.accept());
    // The provider's end-session page follows (rpInitiatedLogout); the server ended the sign-in first.
    const loggedOut = other.waitForResponse((r) => r.url().endsWith('/api/auth/logout'));
    await other.getByRole('button', { name: 'sign out' }).click();
    expect((await loggedOut).status()).toBe(200);

    const text = await errorBanner(tab, 'E_SIGNED_OUT');
    expect(text).toContain('You signed out');
    expect(text).toMatch(/you signed out.*sign in again/);
    expect(text).toContain('Signing out ends the terminals of that sign-in');
    // The page then learns it is signed out (its next poll answers 401) and shows the sign-in
    // page; the ended terminal and its explanation stay until the person closes the tab.
    await tab.getByRole('heading', { name: 'Sign in to Periscope' }).waitFor({ timeout: 30_000 });
    expect(await tab.getByRole('alert').filter({ hasText: 'E_SIGNED_OUT' }).isVisible()).toBe(true);
    await screenshot(tab, 'terminal-signed-out');
    expect(cspViolations(tab)).toEqual([]);
  });

  it('a refresh that lowers the tier ends the live terminal with E_TIER_CHANGED, and the tab says so', async () => {
    // Short-lived provider tokens: the first request after they expire refreshes and re-reads groups.
    idp.setTokenTtl(5);
    try {
      const tab = await signedInTab('carol'); // sre: maintain
      await openPodShell(tab);
      idp.accounts.set('carol', { email: 'carol@example.com', groups: ['developers'] }); // → read
      // The page's own requests carry the refresh (the cluster page polls too; this is sooner).
      await until(
        'a refresh to see tier read',
        async () => {
          const me = (await tab.evaluate(async () => (await fetch('/api/auth/whoami')).json())) as {
            tier?: string;
          };
          if (me.tier === 'read') return true;
          await new Promise((r) => setTimeout(r, 250));
          return false;
        },
        30_000,
      );
      const text = await errorBanner(tab, 'E_TIER_CHANGED');
      expect(text).toContain('Your tier changed');
      expect(text).toMatch(/from maintain to read/);
      expect(text).toContain('Open a new session; it runs with your current tier.');
      await screenshot(tab, 'terminal-tier-changed');
      expect(cspViolations(tab)).toEqual([]);
    } finally {
      idp.setTokenTtl(3600);
    }
  });
});
