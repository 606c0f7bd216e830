import 'reflect-metadata';

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import { freePort } from '../k8s/ports';
import { Browser, startIdp, submitInteraction, type Idp } from '../support/oidc-idp';

/**
 * OpenID Connect sign-in end to end against a real, local OpenID provider (oidc-provider):
 * a browser-like client (fetch, manual redirects, one cookie jar per origin) walks the
 * authorization code flow through the provider's login and consent pages.
 */

/** The provider's users; tests change groups and remove accounts. */
const ACCOUNTS = {
  alice: { email: 'alice@example.com', groups: ['developers', 'sre'] },
  bob: { email: 'bob@example.com', groups: ['contractors'] },
  carol: { email: 'carol@example.com', groups: ['developers'] },
  dave: { email: 'dave@example.com', groups: ['sre'] },
  erin: { email: 'erin@example.com', groups: ['developers'] },
  // Kubernetes' own names: a provider that lets an account pick its subject, or passes groups through.
  'system:kube-controller-manager': { email: 'kcm@example.com', groups: ['sre'] },
  frank: { email: 'frank@example.com', groups: ['developers', 'system:masters', 'System:Nodes'] },
};

let periscope = '';
let issuer = '';
let idp: Idp;
let server: NestExpressApplication;

/**
 * Signs in as `user` and answers the callback response: on success a 302 to returnTo with the
 * session cookie set, or the refusal.
 */
async function signIn(
  user: string,
  returnTo = '/',
): Promise<{
  b: Browser;
  callback: Response;
  callbackUrl: string;
  location: string | undefined;
  authUrl: URL;
}> {
  const b = new Browser();
  const loginUrl = `${periscope}/api/auth/login?returnTo=${encodeURIComponent(returnTo)}`;
  const login = await b.request(loginUrl);
  expect(login.status).toBe(302);
  const authUrl = new URL(login.headers.get('location') ?? '');
  let step = await b.follow(login, loginUrl, periscope);
  for (let i = 0; i < 4 && step.res.status === 200 && step.url.startsWith(issuer); i++) {
    const posted = await submitInteraction(b, step.res, step.url, user);
    step = await b.follow(posted, step.url, periscope);
  }
  expect(step.url.startsWith(`${periscope}/api/auth/callback`)).toBe(true);
  return { b, callback: step.res, callbackUrl: step.url, location: step.location, authUrl };
}

const cookieHeader = (b: Browser): string => b.cookie(periscope);

async function whoami(cookie: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${periscope}/api/auth/whoami`, { headers: { cookie } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  // Periscope's port is reserved up front so the client's redirect URI is known to the provider.
  const port = await freePort();
  periscope = `http://127.0.0.1:${String(port)}`;
  idp = await startIdp(periscope, ACCOUNTS);
  issuer = idp.issuer;

  const dir = mkdtempSync(join(tmpdir(), 'periscope-oidc-'));
  writeFileSync(
    join(dir, 'auth.yaml'),
    [
      'oidc:',
      `  issuer: ${issuer}`,
      `  clientID: ${idp.clientId}`,
      '  providerName: Test IdP',
      '  scopes: [openid, profile, email, offline_access, groups]',
      'session:',
      '  idleTimeoutSeconds: 60',
      '  absoluteTimeoutSeconds: 300',
      'authorization:',
      '  mode: tier',
      '  groupsClaim: groups',
      '  allowedGroups: [developers, sre, platform-admins]',
      '  groupTiers: { developers: read, sre: maintain, platform-admins: admin }',
      '',
    ].join('\n'),
  );
  server = await createServerApp(
    loadServerConfig(
      {
        PERISCOPE_AUTH_MODE: 'oidc',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_OIDC_CLIENT_SECRET: idp.clientSecret,
        PERISCOPE_DATA_DIR: join(dir, 'data'),
        PERISCOPE_PUBLIC_URL: periscope,
        PERISCOPE_LOG_LEVEL: 'warn',
      },
      (p) => readFileSync(p, 'utf8'),
    ),
  );
  await server.listen(port, '127.0.0.1');
});

afterAll(async () => {
  vi.restoreAllMocks();
  await server.close();
  await idp.stop();
});

describe('OpenID Connect sign-in', () => {
  it('says how to sign in, and dev login does not exist', async () => {
    const res = await fetch(`${periscope}/api/auth/config`);
    expect(await res.json()).toEqual({ authMode: 'oidc', providerName: 'Test IdP' });
    const dev = await fetch(`${periscope}/api/auth/dev-login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ subject: 'alice' }),
    });
    expect(dev.status).toBe(404);
    expect((await whoami('')).status).toBe(401);
  });

  it('signs in with code + PKCE; whoami shows subject, email, groups and the highest tier', async () => {
    const { b, callback, location, authUrl } = await signIn('alice', '/clusters/lab?tab=pods');
    expect(authUrl.origin).toBe(issuer);
    expect(authUrl.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authUrl.searchParams.get('code_challenge')).toMatch(/^[\w-]{43}$/);
    expect(authUrl.searchParams.get('state')).toBeTruthy();
    expect(authUrl.searchParams.get('nonce')).toBeTruthy();
    expect(authUrl.searchParams.get('redirect_uri')).toBe(`${periscope}/api/auth/callback`);

    expect(callback.status).toBe(302);
    expect(location).toBe('/clusters/lab?tab=pods');
    const session = b.setCookies(periscope).find((c) => c.startsWith('periscope_session='));
    expect(session).toMatch(/HttpOnly/i);
    expect(session).toMatch(/SameSite=Lax/i);
    expect(session).not.toMatch(/Secure/i);
    const login = b.setCookies(periscope).find((c) => c.startsWith('periscope_session_login='));
    expect(login).toMatch(/HttpOnly/i);
    expect(login).toMatch(/Path=\/api\/auth/i);
    expect(login).toMatch(/Max-Age=600/i);
    // The browser never sees a provider token: the session cookie is a short random id, and the
    // sign-in cookie is sealed (its state is not readable from it).
    expect(session?.split(';')[0]?.length).toBeLessThan(80);
    expect(decodeURIComponent(login ?? '')).not.toContain(authUrl.searchParams.get('state') ?? '-');
    expect(login?.split(';')[0]?.length).toBeLessThan(600);

    const me = await whoami(cookieHeader(b));
    expect(me.status).toBe(200);
    expect(me.body).toEqual({
      subject: 'alice',
      email: 'alice@example.com',
      groups: ['developers', 'sre'],
      mode: 'oidc',
      authzMode: 'tier',
      tier: 'maintain',
      auditEnabled: true,
      auditScope: 'self',
      expiresAt: expect.any(Number) as unknown,
    });
    const expiresAt = (me.body as { expiresAt: number }).expiresAt;
    expect(expiresAt).toBeGreaterThan(Date.now() / 1000);
  });

  it('never redirects off-site after sign-in', async () => {
    expect((await signIn('erin', '//evil.example/x')).location).toBe('/');
    expect((await signIn('erin', 'https://evil.example/')).location).toBe('/');
  });

  it('refuses a user outside allowedGroups with 403 and the allowed groups', async () => {
    const { b, callback } = await signIn('bob');
    expect(callback.status).toBe(403);
    const body = (await callback.json()) as { error: string; message: string };
    expect(body.error).toBe('E_FORBIDDEN');
    expect(body.message).toContain('developers, sre, platform-admins');
    expect(b.jar(periscope).has('periscope_session')).toBe(false);
  });

  it('refuses a subject that starts with system: (403, no session), even in an allowed group', async () => {
    const { b, callback } = await signIn('system:kube-controller-manager');
    expect(callback.status).toBe(403);
    const body = (await callback.json()) as { error: string; message: string };
    expect(body.error).toBe('E_FORBIDDEN');
    expect(body.message).toContain(
      'your account\'s subject "system:kube-controller-manager" starts with "system:", which Kubernetes reserves for its own users',
    );
    expect(body.message).toContain('Ask the administrator of your identity provider');
    expect(b.jar(periscope).has('periscope_session')).toBe(false);
  });

  it('drops IdP groups that start with system: before they can be impersonated', async () => {
    const { b, callback } = await signIn('frank');
    expect(callback.status).toBe(302);
    const me = await whoami(cookieHeader(b));
    expect(me.status).toBe(200);
    expect(me.body['groups']).toEqual(['developers']);
    expect(me.body['tier']).toBe('read');
  });

  it('refuses a forged state, an unknown sign-in and a replayed callback with 400', async () => {
    const b = new Browser();
    const login = await b.request(`${periscope}/api/auth/login`);
    expect(login.status).toBe(302);
    const forged = await b.request(`${periscope}/api/auth/callback?code=abc&state=forged`);
    expect(forged.status).toBe(400);
    const fb = (await forged.json()) as { error: string; message: string };
    expect(fb.error).toBe('E_BAD_REQUEST');
    expect(fb.message).toContain('state parameter does not match');

    const anon = await fetch(`${periscope}/api/auth/callback?code=abc&state=x`);
    expect(anon.status).toBe(400);
    expect(((await anon.json()) as { message: string }).message).toContain('unknown or expired');

    // Replaying a real callback URL fails: each sign-in finishes once.
    const { b: b2, callback, callbackUrl } = await signIn('erin');
    expect(callback.status).toBe(302);
    const replay = await b2.request(callbackUrl);
    expect(replay.status).toBe(400);
    expect(((await replay.json()) as { message: string }).message).toContain('unknown or expired');
  });

  it('answers 401 to a tampered session cookie', async () => {
    const { b } = await signIn('erin');
    const value = b.jar(periscope).get('periscope_session') ?? '';
    expect((await whoami(`periscope_session=${value}`)).status).toBe(200);
    const flipped = `${value.slice(0, -1)}${value.endsWith('A') ? 'B' : 'A'}`;
    const me = await whoami(`periscope_session=${flipped}`);
    expect(me.status).toBe(401);
    expect(me.body['error']).toBe('E_AUTH');
  });

  it('logs out: the session ends and the provider logout URL comes back', async () => {
    const { b } = await signIn('alice');
    const cookie = cookieHeader(b);
    expect((await whoami(cookie)).status).toBe(200);
    const res = await fetch(`${periscope}/api/auth/logout`, { method: 'POST', headers: { cookie } });
    expect(res.status).toBe(200);
    expect(res.headers.getSetCookie().some((c) => /^periscope_session=;/.test(c))).toBe(true);
    const { endSessionUrl } = (await res.json()) as { endSessionUrl: string };
    const u = new URL(endSessionUrl);
    expect(`${u.origin}${u.pathname}`).toBe(`${issuer}/session/end`);
    expect(u.searchParams.get('id_token_hint')).toMatch(/^ey/);
    expect(u.searchParams.get('post_logout_redirect_uri')).toBe(`${periscope}/`);
    expect(u.searchParams.get('client_id')).toBe(idp.clientId);
    // The provider accepts it (its logout confirmation page).
    const page = await b.request(endSessionUrl);
    expect(page.status).toBe(200);
    expect((await whoami(cookie)).status).toBe(401);
  });

  it('refreshes expired provider tokens silently, once for concurrent requests, re-reading groups', async () => {
    idp.setTokenTtl(3);
    try {
      const { b } = await signIn('carol');
      const cookie = cookieHeader(b);
      expect((await whoami(cookie)).body['tier']).toBe('read');
      idp.setTokenTtl(3600); // the refreshed tokens live long, so only one refresh is due
      const before = idp.refreshGrants();
      idp.accounts.set('carol', { email: 'carol@example.com', groups: ['developers', 'platform-admins'] });
      await new Promise((r) => setTimeout(r, 3_200));
      const all = await Promise.all(Array.from({ length: 5 }, () => whoami(cookie)));
      for (const r of all) {
        expect(r.status).toBe(200);
        expect(r.body['tier']).toBe('admin');
      }
      expect(idp.refreshGrants() - before).toBe(1);
      expect((await whoami(cookie)).status).toBe(200);
      expect(idp.refreshGrants() - before).toBe(1);
    } finally {
      idp.setTokenTtl(3600);
    }
  });

  it('ends the session when the refresh fails', async () => {
    idp.setTokenTtl(3);
    try {
      const { b } = await signIn('dave');
      const cookie = cookieHeader(b);
      expect((await whoami(cookie)).status).toBe(200);
      idp.accounts.delete('dave'); // the provider no longer knows dave: the refresh fails
      await new Promise((r) => setTimeout(r, 3_200));
      expect((await whoami(cookie)).status).toBe(401);
    } finally {
      idp.setTokenTtl(3600);
    }
  });

  it('ends an idle session (401)', async () => {
    const { b } = await signIn('erin');
    const cookie = cookieHeader(b);
    expect((await whoami(cookie)).status).toBe(200);
    const realNow = Date.now.bind(Date);
    const spy = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 61_000);
    try {
      const me = await whoami(cookie);
      expect(me.status).toBe(401);
      expect(me.body['error']).toBe('E_AUTH');
    } finally {
      spy.mockRestore();
    }
    expect((await whoami(cookie)).status).toBe(401);
  });
});
