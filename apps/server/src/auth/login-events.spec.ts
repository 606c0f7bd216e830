import type { IncomingMessage } from 'node:http';

import { describe, expect, it } from 'vitest';

import { loadServerConfig } from '../config/server-config';
import { AuthService, loginIdOf, type LoginEnd } from './auth.service';
import type { Principal } from './session-store';
import type { OidcService } from './oidc.service';

const AUTH = `
oidc:
  issuer: https://idp.example.com
  clientID: periscope
authorization:
  mode: tier
  allowedGroups: [sre, ops]
  groupTiers: { sre: maintain, ops: read }
`;

/** The service over a real configuration; the provider answers refreshes with `groups` (or refuses). */
function service(next: { groups: string[] } | 'refuse') {
  const config = loadServerConfig(
    { PERISCOPE_AUTH_FILE: '/auth.yaml', PERISCOPE_LOG_LEVEL: 'fatal' },
    () => AUTH,
  );
  const oidc = {
    refresh: () =>
      next === 'refuse'
        ? Promise.reject(new Error('invalid_grant'))
        : Promise.resolve({
            identity: { subject: 'alice', email: 'a@example.com', groups: next.groups },
            tokens: { refreshToken: 'r2', expiresAt: Date.now() + 3_600_000 },
          }),
    endSessionUrl: () => Promise.resolve(null),
  } as unknown as OidcService;
  const auth = new AuthService(config, oidc);
  const ended: [string, LoginEnd][] = [];
  const changed: [string, Principal, Principal][] = [];
  auth.onLoginEnded((id, why) => ended.push([id, why]));
  auth.onPrincipalChanged((id, before, after) => changed.push([id, before, after]));
  const signIn = async (expired: boolean): Promise<{ cookie: string; req: IncomingMessage }> => {
    const cookie = await auth.startSession(auth.admit({ subject: 'alice', email: '', groups: ['sre'] }), {
      refreshToken: 'r1',
      expiresAt: Date.now() + (expired ? -1000 : 3_600_000),
    });
    return { cookie, req: { headers: { cookie: `periscope_session=${cookie}` } } as IncomingMessage };
  };
  return { auth, ended, changed, signIn };
}

describe('sign-in events (terminals follow their sign-in)', () => {
  it('names a sign-in by a handle that is not its cookie', async () => {
    const { auth, signIn } = service({ groups: ['sre'] });
    const { cookie, req } = await signIn(false);
    expect(auth.loginId(req)).toBe(loginIdOf(cookie));
    expect(auth.loginId(req)).not.toContain(cookie.slice(0, 10));
    expect(auth.loginId({ headers: {} } as IncomingMessage)).toBeUndefined();
  });

  it('announces a sign-out, once, and not for a cookie that signs nothing', async () => {
    const { auth, ended, signIn } = service({ groups: ['sre'] });
    const { cookie, req } = await signIn(false);
    await auth.signOut(req);
    await auth.signOut(req);
    await auth.signOut({ headers: { cookie: 'periscope_session=nope' } } as IncomingMessage);
    expect(ended).toEqual([[loginIdOf(cookie), 'signed_out']]);
  });

  it('announces a tier change at refresh with the principal before and after', async () => {
    const { auth, changed, signIn } = service({ groups: ['ops'] });
    const { cookie, req } = await signIn(true);
    expect((await auth.authenticate(req))?.tier).toBe('read');
    expect(changed).toHaveLength(1);
    expect(changed[0]?.[0]).toBe(loginIdOf(cookie));
    expect(changed[0]?.[1].tier).toBe('maintain');
    expect(changed[0]?.[2].tier).toBe('read');
  });

  it('says nothing when a refresh changes nothing', async () => {
    const { auth, changed, ended, signIn } = service({ groups: ['sre'] });
    await auth.authenticate((await signIn(true)).req);
    expect(changed).toEqual([]);
    expect(ended).toEqual([]);
  });

  it('announces the end of a sign-in whose refresh the provider refuses', async () => {
    const { auth, ended, signIn } = service('refuse');
    const { cookie, req } = await signIn(true);
    expect(await auth.authenticate(req)).toBeUndefined();
    expect(ended).toEqual([[loginIdOf(cookie), 'refresh_refused']]);
  });
});
