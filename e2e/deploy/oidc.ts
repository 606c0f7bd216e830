/**
 * A real OpenID provider (oidc-provider, development interactions) on 127.0.0.1, and a minimal
 * browser that signs in to Periscope through it (authorization code + PKCE, manual redirects, one
 * cookie jar per origin). The helm chart always runs the server in oidc mode, so this is how a
 * test signs in to a helm-installed server.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import Provider, { type Configuration } from 'oidc-provider';

export interface OidcAccount {
  email: string;
  groups: string[];
}

export interface OidcProvider {
  issuer: string;
  clientID: string;
  clientSecret: string;
  close: () => Promise<void>;
}

/** Starts the provider with one confidential client whose redirect URI is `<publicURL>/api/auth/callback`. */
export async function startOidcProvider(
  publicURL: string,
  accounts: Record<string, OidcAccount>,
): Promise<OidcProvider> {
  const clientID = 'periscope';
  const clientSecret = `secret-${Math.random().toString(36).slice(2)}`;
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
        client_id: clientID,
        client_secret: clientSecret,
        redirect_uris: [`${publicURL}/api/auth/callback`],
        post_logout_redirect_uris: [`${publicURL}/`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    findAccount: (_ctx, id) => {
      const a = accounts[id];
      if (a === undefined) return undefined;
      return {
        accountId: id,
        claims: () => ({ sub: id, email: a.email, email_verified: true, groups: [...a.groups] }),
      };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['periscope-deploy-test'] },
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  };
  route.handler = new Provider(issuer, config).callback();
  return {
    issuer,
    clientID,
    clientSecret,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => {
          r();
        });
      }),
  };
}

/** Cookie jars per origin; redirects are followed by hand. */
class Browser {
  private readonly jars = new Map<string, Map<string, string>>();

  jar(origin: string): Map<string, string> {
    let j = this.jars.get(origin);
    if (!j) {
      j = new Map();
      this.jars.set(origin, j);
    }
    return j;
  }

  async request(url: string, form?: Record<string, string>): Promise<Response> {
    const u = new URL(url);
    const jar = this.jar(u.origin);
    const headers: Record<string, string> = {};
    if (jar.size > 0) headers['cookie'] = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(form).toString();
    }
    const res = await fetch(url, { method: form ? 'POST' : 'GET', headers, body, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair = ''] = c.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (value === '' || /max-age=0/i.test(c)) jar.delete(name);
      else jar.set(name, value);
    }
    return res;
  }
}

/**
 * Signs `user` in to Periscope at `publicURL` through the provider's login and consent pages and
 * returns the Cookie header of the Periscope session.
 */
export async function oidcSignIn(publicURL: string, issuer: string, user: string): Promise<string> {
  const b = new Browser();
  let url = `${publicURL}/api/auth/login?returnTo=%2F`;
  let res = await b.request(url);
  for (let hops = 0; hops < 30; hops++) {
    const loc = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && loc !== null) {
      const next = new URL(loc, url);
      await res.arrayBuffer();
      // Back at Periscope outside /api/auth: signed in.
      if (next.origin === publicURL && !next.pathname.startsWith('/api/auth/')) break;
      url = next.href;
      res = await b.request(url);
      continue;
    }
    if (res.status === 200 && url.startsWith(issuer)) {
      const html = await res.text();
      const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
      const prompt = /name="prompt" value="([^"]+)"/.exec(html)?.[1];
      if (action === undefined || prompt === undefined)
        throw new Error(`no interaction form at ${url}: ${html.slice(0, 300)}`);
      const form: Record<string, string> =
        prompt === 'login' ? { prompt, login: user, password: 'any' } : { prompt };
      const target = new URL(action.replaceAll('&amp;', '&'), url).href;
      res = await b.request(target, form);
      url = target;
      continue;
    }
    throw new Error(`sign-in stopped at ${url}: HTTP ${res.status} ${(await res.text()).slice(0, 300)}`);
  }
  const jar = b.jar(publicURL);
  if (!jar.has('periscope_session')) throw new Error('signed in, but no periscope_session cookie was set');
  return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
}
