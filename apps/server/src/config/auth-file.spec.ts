import { describe, expect, it } from 'vitest';

import { DEFAULT_AUTH, parseAuthFile } from './auth-file';

describe(parseAuthFile.name, () => {
  it('reads every section with its defaults', () => {
    const { auth, problems } = parseAuthFile(
      [
        'oidc: { issuer: "https://idp", clientID: p, providerName: "" }',
        'session: { idleTimeoutSeconds: 600 }',
        'authorization: { mode: tier, groupTiers: { ops: admin }, defaultTier: "" }',
        'dev: { users: [{ subject: alice }] }',
        '',
      ].join('\n'),
      'auth.yaml',
    );
    expect(problems).toEqual([]);
    expect(auth).toEqual({
      oidc: {
        issuer: 'https://idp',
        clientId: 'p',
        scopes: ['openid', 'profile', 'email', 'offline_access', 'groups'],
      },
      session: { ...DEFAULT_AUTH.session, idleTimeoutSeconds: 600 },
      authorization: { ...DEFAULT_AUTH.authorization, mode: 'tier', groupTiers: { ops: 'admin' } },
      devUsers: [{ subject: 'alice', email: 'alice@local', groups: [] }],
    });
    expect(parseAuthFile('', 'auth.yaml')).toEqual({ auth: DEFAULT_AUTH, problems: [] });
  });

  it('refuses unknown keys (typos) in every section, naming the file, the path and the known keys', () => {
    const { problems } = parseAuthFile(
      [
        'oidc: { issuer: "https://idp", clientId: p }',
        'authorization: { mode: tier, groupTier: { ops: admin } }',
        'sessions: {}',
        '',
      ].join('\n'),
      'auth.yaml',
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        {
          setting: 'auth.yaml: oidc.clientId',
          allowed: expect.stringMatching(/^one of the keys issuer, clientID/),
        },
        { setting: 'auth.yaml: oidc.clientID', allowed: 'a value' },
        {
          setting: 'auth.yaml: authorization.groupTier',
          allowed: expect.stringMatching(/^one of the keys mode, .*groupTiers/),
        },
        { setting: 'auth.yaml: sessions', allowed: 'one of the keys oidc, session, authorization, dev' },
      ]),
    );
    expect(problems).toHaveLength(4);
  });

  it('says what each wrong value should be', () => {
    const { problems } = parseAuthFile(
      [
        'oidc: { issuer: "idp.example.com", clientID: p, scopes: [profile] }',
        'session: { idleTimeoutSeconds: 5, cookieName: "a b" }',
        'authorization: { mode: rbac, allowedGroups: ops }',
        'dev: { users: [{ groups: [a] }] }',
        '',
      ].join('\n'),
      'auth.yaml',
    );
    expect(problems).toEqual([
      {
        setting: 'auth.yaml: oidc.issuer',
        value: 'idp.example.com',
        allowed: 'an http(s) URL of the OpenID provider',
      },
      { setting: 'auth.yaml: oidc.scopes', value: '["profile"]', allowed: 'a list that includes openid' },
      {
        setting: 'auth.yaml: session.cookieName',
        value: 'a b',
        allowed: 'a cookie name (letters, digits, _ and -)',
      },
      {
        setting: 'auth.yaml: session.idleTimeoutSeconds',
        value: '5',
        allowed: 'a whole number from 60 to 86400',
      },
      { setting: 'auth.yaml: authorization.mode', value: 'rbac', allowed: 'one of shared, tier, raw' },
      {
        setting: 'auth.yaml: authorization.allowedGroups',
        value: 'ops',
        allowed: 'a list of at most 256 strings',
      },
      { setting: 'auth.yaml: dev.users[0].subject', allowed: 'a value' },
    ]);
  });

  it('refuses a section that is not a mapping', () => {
    expect(parseAuthFile('oidc: 5\n', 'auth.yaml').problems).toEqual([
      { setting: 'auth.yaml: oidc', value: '5', allowed: 'a mapping' },
    ]);
  });
});
