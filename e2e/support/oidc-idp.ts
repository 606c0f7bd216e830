/**
 * A real, local OpenID provider (oidc-provider, development interactions) on 127.0.0.1 for tests
 * that sign in through Periscope's OIDC flow, and a browser-like client (fetch, manual redirects,
 * one cookie jar per origin) that walks the authorization code flow through the provider's login
 * and consent pages. Accounts and the token lifetime can be changed while it runs (group changes
 * show at the next refresh; an account deleted from `accounts` can no longer sign in or refresh).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import Provider, { type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

export interface IdpAccount {
  email: string;
  groups: string[];
}

export interface Idp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  accounts: Map<string, IdpAccount>;
  /** access and ID token lifetime (seconds) of tokens issued from now on */
  setTokenTtl(seconds: number): void;
  /** refresh_token grants the provider has answered so far */
  refreshGrants(): number;
  stop(): Promise<void>;
}

/**
 * Starts the provider with one confidential client for a Periscope at `periscope` (its origin:
 * the redirect URI is `<periscope>/api/auth/callback`).
 */
export async function startIdp(periscope: string, accounts: Record<string, IdpAccount>): Promise<Idp> {
  const clientId = 'periscope';
  const clientSecret = `secret-${Math.random().toString(36).slice(2)}`;
  const known = new Map(Object.entries(accounts));
  let tokenTtl = 3600;
  let refreshGrants = 0;
  const route: { handler?: ReturnType<Provider['callback']> } = {};
  const server: Server = createServer((req, res) => {
    if (route.handler) void route.handler(req, res);
    else res.writeHead(503).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  const config: Configuration = {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [`${periscope}/api/auth/callback`],
        post_logout_redirect_uris: [`${periscope}/`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    findAccount: (_ctx, id) => {
      const a = known.get(id);
      if (!a) return undefined;
      return {
        accountId: id,
        claims: () => ({ sub: id, email: a.email, email_verified: true, groups: [...a.groups] }),
      };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    ttl: { AccessToken: () => tokenTtl, IdToken: () => tokenTtl },
    cookies: { keys: ['periscope-oidc-test'] },
    // oidc-provider drops offline_access unless the request says prompt=consent (a strict reading
    // of OpenID Connect Core §11); Keycloak, Okta, Auth0, Dex and Entra issue refresh tokens
    // without it, and so does this provider.
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  };
  const provider = new Provider(issuer, config);
  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    if (ctx.oidc.params?.['grant_type'] === 'refresh_token') refreshGrants++;
  });
  route.handler = provider.callback();
  return {
    issuer,
    clientId,
    clientSecret,
    accounts: known,
    setTokenTtl: (s) => {
      tokenTtl = s;
    },
    refreshGrants: () => refreshGrants,
    stop: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => {
          r();
        });
      }),
  };
}

/** A minimal browser: a cookie jar per origin, redirects followed by hand. */
export class Browser {
  private readonly jars = new Map<string, Map<string, string>>();
  private readonly received = new Map<string, string[]>();

  jar(origin: string): Map<string, string> {
    let j = this.jars.get(origin);
    if (!j) {
      j = new Map();
      this.jars.set(origin, j);
    }
    return j;
  }

  /** The Cookie header this browser sends to `origin`. */
  cookie(origin: string): string {
    return [...this.jar(origin)].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  /** Every Set-Cookie header `origin` has sent this browser, oldest first. */
  setCookies(origin: string): string[] {
    return this.received.get(origin) ?? [];
  }

  async request(
    url: string,
    init: { method?: string; form?: Record<string, string> } = {},
  ): Promise<Response> {
    const u = new URL(url);
    const jar = this.jar(u.origin);
    const headers: Record<string, string> = {};
    if (jar.size > 0) headers['cookie'] = this.cookie(u.origin);
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const res = await fetch(url, { method: init.method ?? 'GET', headers, body, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      this.received.set(u.origin, [...this.setCookies(u.origin), c]);
      const [pair = '', ...attrs] = c.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k = '', v = ''] = a.trim().split('=');
        return (
          (k.toLowerCase() === 'max-age' && Number(v) <= 0) ||
          (k.toLowerCase() === 'expires' && Date.parse(v) <= Date.now())
        );
      });
      if (expired || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    return res;
  }

  /**
   * Follows redirects from `res` (at `url`) until an answer that is not a redirect, or a redirect
   * to a page of the Periscope at `periscope` outside /api/auth (the returnTo after sign-in).
   */
  async follow(
    res: Response,
    url: string,
    periscope: string,
  ): Promise<{ res: Response; url: string; location?: string }> {
    let cur = res;
    let at = url;
    for (let hops = 0; hops < 20; hops++) {
      const loc = cur.headers.get('location');
      if (cur.status < 300 || cur.status > 399 || loc === null) return { res: cur, url: at };
      const next = new URL(loc, at);
      if (next.origin === periscope && !next.pathname.startsWith('/api/auth/'))
        return { res: cur, url: at, location: loc };
      await cur.arrayBuffer();
      at = next.href;
      cur = await this.request(at);
    }
    throw new Error('too many redirects');
  }
}

/** Submits the provider's login or consent form (`page`, at `pageUrl`) as `user`. */
export async function submitInteraction(
  b: Browser,
  page: Response,
  pageUrl: string,
  user: string,
): Promise<Response> {
  const html = await page.text();
  const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
  const prompt = /name="prompt" value="([^"]+)"/.exec(html)?.[1];
  if (action === undefined || prompt === undefined)
    throw new Error(`no interaction form at ${pageUrl}: ${html.slice(0, 300)}`);
  const form: Record<string, string> =
    prompt === 'login' ? { prompt, login: user, password: 'any' } : { prompt };
  const target = new URL(action.replaceAll('&amp;', '&'), pageUrl).href;
  return b.request(target, { method: 'POST', form });
}

/**
 * Signs `user` in to Periscope at `periscope` through `idp` in a fresh browser (the provider's
 * login and consent forms submitted as a person would); answers the browser holding the session.
 * `returnTo`, when given, is sent to /api/auth/login.
 */
export async function signIn(periscope: string, idp: Idp, user: string, returnTo?: string): Promise<Browser> {
  const b = new Browser();
  const query = returnTo === undefined ? '' : `?returnTo=${encodeURIComponent(returnTo)}`;
  const loginUrl = `${periscope}/api/auth/login${query}`;
  let step = await b.follow(await b.request(loginUrl), loginUrl, periscope);
  for (let i = 0; i < 4 && step.location === undefined; i++) {
    if (step.res.status !== 200 || !step.url.startsWith(idp.issuer)) break;
    const posted = await submitInteraction(b, step.res, step.url, user);
    step = await b.follow(posted, step.url, periscope);
  }
  if (step.location === undefined)
    throw new Error(
      `sign-in as ${user} stopped at ${step.url}: HTTP ${step.res.status} ${(await step.res.text()).slice(0, 300)}`,
    );
  await step.res.arrayBuffer();
  return b;
}

/**
 * Signs `user` in (returnTo `/`) and answers the Cookie header of the Periscope session, for
 * requests made with plain fetch.
 */
export async function sessionCookie(periscope: string, idp: Idp, user: string): Promise<string> {
  const b = await signIn(periscope, idp, user, '/');
  if (!b.jar(periscope).has('periscope_session'))
    throw new Error('signed in, but no periscope_session cookie was set');
  return b.cookie(periscope);
}
