import { createServer } from 'node:net';

import { describe, expect, it } from 'vitest';

import { DomainError } from '../common/domain-error';
import type { ServerConfig } from '../config/server-config';
import { OidcService } from './oidc.service';

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const addr = srv.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  await new Promise((r) => srv.close(r));
  return port;
}

const configWith = (issuer: string, authMode: 'oidc' | 'dev' = 'oidc'): ServerConfig =>
  ({
    authMode,
    http: { publicUrl: 'https://periscope.example.com' },
    auth: {
      oidc: { issuer, clientId: 'periscope', scopes: ['openid'] },
      authorization: { groupsClaim: 'groups' },
    },
  }) as unknown as ServerConfig;

describe(OidcService.name, () => {
  it('derives the redirect and post-logout URLs from the public URL', () => {
    const svc = new OidcService(configWith('https://idp.example.com'));
    expect(svc.redirectUrl).toBe('https://periscope.example.com/api/auth/callback');
    expect(svc.postLogoutRedirectUrl).toBe('https://periscope.example.com/');
  });

  it('answers a clear 500 while the provider is unreachable and tries again on the next call', async () => {
    const svc = new OidcService(configWith(`http://127.0.0.1:${String(await closedPort())}`));
    try {
      for (let i = 0; i < 2; i++) {
        const err = await svc.discover().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DomainError);
        expect(err).toMatchObject({ code: 'E_INTERNAL' });
        expect((err as Error).message).toMatch(/OpenID provider http:\/\/127\.0\.0\.1:\d+ is not reachable/);
      }
    } finally {
      svc.onModuleDestroy();
    }
  });

  it('is off in dev mode', async () => {
    const svc = new OidcService(configWith('https://idp.example.com', 'dev'));
    await expect(svc.startLogin('/')).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    expect(await svc.endSessionUrl(undefined)).toBeNull();
  });
});
