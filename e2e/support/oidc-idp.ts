/**
 * A real, local OpenID provider (oidc-provider) for tests that sign in through Periscope's OIDC
 * flow, and a browser-like client (fetch, manual redirects, one cookie jar per origin) that walks
 * the authorization code flow through the provider's login and consent pages. Accounts and the
 * token lifetime can be changed while it runs (group changes show at the next refresh).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import Provider, { type Configuration } from 'oidc-provider';

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
  stop(): Promise<void>;
}

/** Starts the provider for a Periscope at `periscope` (its origin, for the redirect URI). */
export async function startIdp(periscope: string, accounts: Record<string, IdpAccount>): Promise<Idp> {
  const clientId = 'periscope';
  const clientSecret = 'periscope-test-secret';
  const known = new Map(Object.entries(accounts));
  let tokenTtl = 3600;
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
    // Refresh tokens without prompt=consent, as Keycloak, Okta, Auth0, Dex and Entra issue them.
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  };
  route.handler = new Provider(issuer, config).callback();
  return {
    issuer,
    clientId,
    clientSecret,
    accounts: known,
    setTokenTtl: (s) => {
      tokenTtl = s;
    },
    stop: () =>
      new Promise((r) => {
        server.close(() => {
          r();
        });
      }),
  };
}

/** A minimal browser: a cookie jar per origin, redirects followed by hand. */
export class Browser {
  private readonly jars = new Map<string, Map<string, string>>();

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
}

/**
 * Signs `user` in to Periscope at `periscope` through `idp` in a fresh browser (the provider's
 * login and consent forms submitted as a person would); answers the browser holding the session.
 */
export async function signIn(periscope: string, idp: Idp, user: string): Promise<Browser> {
  const b = new Browser();
  let url = `${periscope}/api/auth/login`;
  let res = await b.request(url);
  for (let hops = 0; hops < 30; hops++) {
    const loc = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && loc !== null) {
      await res.arrayBuffer();
      const next = new URL(loc, url);
      if (next.origin === periscope && !next.pathname.startsWith('/api/auth/')) return b; // signed in
      url = next.href;
      res = await b.request(url);
      continue;
    }
    if (res.status === 200 && url.startsWith(idp.issuer)) {
      const html = await res.text();
      const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
      const prompt = /name="prompt" value="([^"]+)"/.exec(html)?.[1];
      if (action === undefined || prompt === undefined)
        throw new Error(`no interaction form at ${url}: ${html.slice(0, 300)}`);
      const form: Record<string, string> =
        prompt === 'login' ? { prompt, login: user, password: 'any' } : { prompt };
      const target = new URL(action.replaceAll('&amp;', '&'), url).href;
      res = await b.request(target, { method: 'POST', form });
      url = target;
      continue;
    }
    throw new Error(
      `sign-in as ${user} stopped at ${url}: HTTP ${res.status} ${(await res.text()).slice(0, 300)}`,
    );
  }
  throw new Error(`sign-in as ${user}: too many redirects`);
}
