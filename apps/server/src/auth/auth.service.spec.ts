import type { IncomingMessage } from 'node:http';

import { describe, expect, it } from 'vitest';

import { DomainError } from '../common/domain-error';
import { loadServerConfig } from '../config/server-config';
import { AuthService } from './auth.service';
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

/** The service over a real configuration; `refreshed` is what the provider answers on refresh. */
function service(refreshed?: { subject: string; groups: string[] }): AuthService {
  const config = loadServerConfig(
    { PERISCOPE_AUTH_FILE: '/auth.yaml', PERISCOPE_LOG_LEVEL: 'fatal' },
    () => AUTH,
  );
  const oidc = {
    refresh: () =>
      Promise.resolve({
        identity: { email: 'x@example.com', ...(refreshed ?? { subject: 'alice', groups: ['sre'] }) },
        tokens: { refreshToken: 'r2', expiresAt: Date.now() + 3_600_000 },
      }),
  } as unknown as OidcService;
  return new AuthService(config, oidc);
}

const reqWith = (cookie: string): IncomingMessage => ({ headers: { cookie } }) as IncomingMessage;

describe(AuthService.name, () => {
  it('refuses a system: subject at sign-in with 403 and what to do', () => {
    const auth = service();
    let err: unknown;
    try {
      auth.admit({ subject: 'system:kube-controller-manager', email: '', groups: ['sre'] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).code).toBe('E_FORBIDDEN');
    expect((err as DomainError).message).toContain(
      'your account\'s subject "system:kube-controller-manager" starts with "system:"',
    );
    expect((err as DomainError).message).toContain('Ask the administrator of your identity provider');
  });

  it('drops system: groups before anything uses them, and they never admit anyone', () => {
    const auth = service();
    const p = auth.admit({
      subject: 'alice',
      email: 'a@x',
      groups: ['system:masters', 'sre', 'System:Nodes'],
    });
    expect(p.groups).toEqual(['sre']);
    expect(p.tier).toBe('maintain');
    // A user whose only matching group is a system one is not in allowedGroups.
    expect(() => auth.admit({ subject: 'bob', email: '', groups: ['system:masters'] })).toThrow(
      /not in a group allowed to use Periscope/,
    );
    expect(auth.principalFor('carol', '', ['system:authenticated', 'ops']).groups).toEqual(['ops']);
  });

  it('ends a session whose refreshed identity has a system: subject', async () => {
    const auth = service({ subject: 'system:admin', groups: ['sre'] });
    const id = await auth.startSession(auth.admit({ subject: 'alice', email: '', groups: ['sre'] }), {
      refreshToken: 'r1',
      expiresAt: Date.now() - 1000,
    });
    expect(await auth.authenticate(reqWith(`periscope_session=${id}`))).toBeUndefined();
  });

  it('keeps a session whose refresh is clean, without system groups', async () => {
    const auth = service({ subject: 'alice', groups: ['sre', 'system:masters'] });
    const id = await auth.startSession(auth.admit({ subject: 'alice', email: '', groups: ['sre'] }), {
      refreshToken: 'r1',
      expiresAt: Date.now() - 1000,
    });
    const p = await auth.authenticate(reqWith(`periscope_session=${id}`));
    expect(p?.subject).toBe('alice');
    expect(p?.groups).toEqual(['sre']);
  });
});
