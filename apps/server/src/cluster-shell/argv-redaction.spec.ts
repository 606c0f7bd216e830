import { describe, expect, it } from 'vitest';

import { isSecretName, MASK, redactArgv, scrubText } from './argv-redaction';

const M = MASK;

/**
 * Real kubectl and helm command lines as an operator types them (split as the shell would), and
 * what the audit record keeps. Rows that must not change are as important as the redacted ones:
 * the record stays useful.
 */
const TABLE: [about: string, argv: string[], stored: string[]][] = [
  ['a plain read', ['kubectl', 'get', 'pods', '-A'], ['kubectl', 'get', 'pods', '-A']],
  [
    'label selectors and jsonpath are kept',
    ['kubectl', 'get', 'secret', 'db', '-n', 'prod', '-o', 'jsonpath={.data.password}', '-l', 'app=web'],
    ['kubectl', 'get', 'secret', 'db', '-n', 'prod', '-o', 'jsonpath={.data.password}', '-l', 'app=web'],
  ],
  [
    '--token value',
    ['kubectl', '--token', 'eyJhbGciOi.x.y', 'get', 'ns'],
    ['kubectl', '--token', M, 'get', 'ns'],
  ],
  [
    '--token=value',
    ['kubectl', '--token=eyJhbGciOi.x.y', 'get', 'ns'],
    ['kubectl', `--token=${M}`, 'get', 'ns'],
  ],
  [
    'a token containing "="',
    ['kubectl', 'get', 'pods', '--token=abc==', '--server', 'https://10.0.0.1:6443'],
    ['kubectl', 'get', 'pods', `--token=${M}`, '--server', 'https://10.0.0.1:6443'],
  ],
  [
    'repeated secret flags',
    ['kubectl', '--password', 'one', '--password=two', '--username', 'admin', 'get', 'ns'],
    ['kubectl', '--password', M, `--password=${M}`, '--username', 'admin', 'get', 'ns'],
  ],
  [
    'config set-credentials with token, key and password',
    [
      'kubectl',
      'config',
      'set-credentials',
      'ci',
      '--token=abc',
      '--client-key=/keys/ci.key',
      '--client-certificate=/keys/ci.crt',
      '--password',
      's3cr3t',
      '--username=ci',
    ],
    [
      'kubectl',
      'config',
      'set-credentials',
      'ci',
      `--token=${M}`,
      `--client-key=${M}`,
      '--client-certificate=/keys/ci.crt',
      '--password',
      M,
      '--username=ci',
    ],
  ],
  [
    'config set-credentials with an auth-provider secret and an exec env',
    [
      'kubectl',
      'config',
      'set-credentials',
      'sso',
      '--auth-provider=oidc',
      '--auth-provider-arg=client-secret=xyz',
      '--auth-provider-arg',
      'idp-issuer-url=https://login.example.com',
      '--exec-env=VAULT_TOKEN=hvs.abc',
    ],
    [
      'kubectl',
      'config',
      'set-credentials',
      'sso',
      '--auth-provider=oidc',
      `--auth-provider-arg=client-secret=${M}`,
      '--auth-provider-arg',
      `idp-issuer-url=${M}`,
      `--exec-env=VAULT_TOKEN=${M}`,
    ],
  ],
  [
    'config set of a credential path',
    ['kubectl', 'config', 'set', 'users.ci.token', 'abc.def'],
    ['kubectl', 'config', 'set', 'users.ci.token', M],
  ],
  [
    'config set of client-key-data',
    ['kubectl', 'config', 'set', 'users.ci.client-key-data', 'LS0tLS1CRUdJTi'],
    ['kubectl', 'config', 'set', 'users.ci.client-key-data', M],
  ],
  [
    'config set of a harmless path is kept',
    ['kubectl', 'config', 'set', 'contexts.lab.namespace', 'dev'],
    ['kubectl', 'config', 'set', 'contexts.lab.namespace', 'dev'],
  ],
  [
    '--client-certificate-data',
    ['kubectl', '--client-certificate-data=LS0tLS1', '--client-key-data', 'LS0tLS2', 'get', 'ns'],
    ['kubectl', `--client-certificate-data=${M}`, '--client-key-data', M, 'get', 'ns'],
  ],
  [
    'from-literal keeps the key, both forms, a value with "="',
    [
      'kubectl',
      'create',
      'secret',
      'generic',
      'db',
      '--from-literal=user=admin',
      '--from-literal',
      'password=a=b=c',
    ],
    [
      'kubectl',
      'create',
      'secret',
      'generic',
      'db',
      `--from-literal=user=${M}`,
      '--from-literal',
      `password=${M}`,
    ],
  ],
  [
    'from-file and from-env-file keep their paths (file contents never enter argv)',
    [
      'kubectl',
      'create',
      'secret',
      'generic',
      'tls',
      '--from-file=tls.key=./certs/key.pem',
      '--from-file',
      './ca.pem',
      '--from-env-file=.env',
    ],
    [
      'kubectl',
      'create',
      'secret',
      'generic',
      'tls',
      '--from-file=tls.key=./certs/key.pem',
      '--from-file',
      './ca.pem',
      '--from-env-file=.env',
    ],
  ],
  [
    'docker-registry secret',
    [
      'kubectl',
      'create',
      'secret',
      'docker-registry',
      'regcred',
      '--docker-server=ghcr.io',
      '--docker-username=bot',
      '--docker-password',
      'ghp_123',
      '--docker-email=bot@example.com',
    ],
    [
      'kubectl',
      'create',
      'secret',
      'docker-registry',
      'regcred',
      '--docker-server=ghcr.io',
      '--docker-username=bot',
      '--docker-password',
      M,
      '--docker-email=bot@example.com',
    ],
  ],
  [
    'helm --set values are all hidden, keys kept',
    [
      'helm',
      'upgrade',
      '--install',
      'db',
      'bitnami/postgresql',
      '--set',
      'auth.postgresPassword=pw,primary.persistence.size=8Gi',
      '--set-string=image.tag=16.2',
    ],
    [
      'helm',
      'upgrade',
      '--install',
      'db',
      'bitnami/postgresql',
      '--set',
      `auth.postgresPassword=${M},primary.persistence.size=${M}`,
      `--set-string=image.tag=${M}`,
    ],
  ],
  [
    'helm --set with escaped commas, lists and "=" in the value',
    [
      'helm',
      'install',
      'x',
      'chart',
      '--set',
      'motd=hi\\, pw is x,hosts={a.example,b.example},dsn=pg://h?sslmode=require',
    ],
    ['helm', 'install', 'x', 'chart', '--set', `motd=${M},hosts=${M},${M},dsn=${M}`],
  ],
  [
    'helm --set-json and --set-literal',
    [
      'helm',
      'install',
      'x',
      'chart',
      '--set-json',
      'creds={"user":"u","pass":"p"}',
      '--set-literal',
      'k=a,b=c',
    ],
    ['helm', 'install', 'x', 'chart', '--set-json', `creds=${M},${M}`, '--set-literal', `k=${M},b=${M}`],
  ],
  [
    'helm --set-file keeps its path; -f values files are kept',
    ['helm', 'install', 'x', 'chart', '--set-file', 'ca=./ca.pem', '-f', 'prod.yaml'],
    ['helm', 'install', 'x', 'chart', '--set-file', 'ca=./ca.pem', '-f', 'prod.yaml'],
  ],
  [
    'helm repo add with a password and a basic-auth URL',
    [
      'helm',
      'repo',
      'add',
      'int',
      'https://bot:hunter2@charts.example.com',
      '--username',
      'bot',
      '--password',
      'hunter2',
    ],
    [
      'helm',
      'repo',
      'add',
      'int',
      `https://bot:${M}@charts.example.com`,
      '--username',
      'bot',
      '--password',
      M,
    ],
  ],
  [
    'helm registry login -p (short), -u kept',
    ['helm', 'registry', 'login', 'ghcr.io', '-u', 'bot', '-p', 'ghp_abc'],
    ['helm', 'registry', 'login', 'ghcr.io', '-u', 'bot', '-p', M],
  ],
  [
    'helm registry login -pVALUE attached',
    ['helm', 'registry', 'login', '-pghp_abc', 'ghcr.io'],
    ['helm', 'registry', 'login', `-p${M}`, 'ghcr.io'],
  ],
  [
    'helm --password-stdin takes no value',
    ['helm', 'registry', 'login', '--password-stdin', 'ghcr.io', '--username', 'bot'],
    ['helm', 'registry', 'login', '--password-stdin', 'ghcr.io', '--username', 'bot'],
  ],
  [
    'helm --pass-credentials takes no value',
    ['helm', 'install', '--pass-credentials', 'web', 'int/web'],
    ['helm', 'install', '--pass-credentials', 'web', 'int/web'],
  ],
  [
    'helm --kube-token',
    ['helm', 'list', '--kube-token', 'abc', '--kube-apiserver', 'https://k.example.com'],
    ['helm', 'list', '--kube-token', M, '--kube-apiserver', 'https://k.example.com'],
  ],
  [
    'kubectl patch -p of a deployment is kept',
    ['kubectl', 'patch', 'deploy', 'web', '-p', '{"spec":{"replicas":3}}'],
    ['kubectl', 'patch', 'deploy', 'web', '-p', '{"spec":{"replicas":3}}'],
  ],
  [
    'a JSON patch without secrets is kept exactly as typed',
    ['kubectl', 'patch', 'deploy', 'web', '--type', 'merge', '-p', '{ "spec": { "replicas": 3 } }'],
    ['kubectl', 'patch', 'deploy', 'web', '--type', 'merge', '-p', '{ "spec": { "replicas": 3 } }'],
  ],
  [
    'a numeric secret in JSON',
    ['kubectl', 'run', 'x', '--image=a', '--overrides={"spec":{"pin":{"password":1234,"enabled":true}}}'],
    ['kubectl', 'run', 'x', '--image=a', `--overrides={"spec":{"pin":{"password":"${M}","enabled":true}}}`],
  ],
  [
    'kubectl patch -p of a Secret is hidden',
    ['kubectl', 'patch', 'secret', 'db', '-p', 'data:\n  password: aHVudGVyMg=='],
    ['kubectl', 'patch', 'secret', 'db', '-p', M],
  ],
  [
    'kubectl patch --patch of secret/x',
    ['kubectl', '-n', 'prod', 'patch', 'secret/db', '--type=merge', '--patch={"stringData":{"pw":"x"}}'],
    ['kubectl', '-n', 'prod', 'patch', 'secret/db', '--type=merge', `--patch=${M}`],
  ],
  [
    'a JSON patch with an env entry named like a secret',
    [
      'kubectl',
      'patch',
      'deploy',
      'api',
      '--patch',
      '{"spec":{"template":{"spec":{"containers":[{"name":"api","env":[{"name":"DB_PASSWORD","value":"pw"},{"name":"MODE","value":"prod"}]}]}}}}',
    ],
    [
      'kubectl',
      'patch',
      'deploy',
      'api',
      '--patch',
      `{"spec":{"template":{"spec":{"containers":[{"name":"api","env":[{"name":"DB_PASSWORD","value":"${M}"},{"name":"MODE","value":"prod"}]}]}}}}`,
    ],
  ],
  [
    'kubectl set env: every value hidden, keys kept',
    ['kubectl', 'set', 'env', 'deploy/api', 'LOG_LEVEL=debug', 'API_TOKEN=t0k', '-e', 'X=1'],
    ['kubectl', 'set', 'env', 'deploy/api', `LOG_LEVEL=${M}`, `API_TOKEN=${M}`, '-e', `X=${M}`],
  ],
  [
    'kubectl run --env',
    ['kubectl', 'run', 'tmp', '--image=busybox', '--env=PGPASSWORD=pw', '--env', 'A=b', '--', 'sleep', '1'],
    [
      'kubectl',
      'run',
      'tmp',
      '--image=busybox',
      `--env=PGPASSWORD=${M}`,
      '--env',
      `A=${M}`,
      '--',
      'sleep',
      '1',
    ],
  ],
  [
    'flags after -- belong to the program in the pod: its secrets are hidden too',
    ['kubectl', 'exec', '-it', 'db-0', '--', 'psql', '--password=pw', '--username', 'app', '--api-key', 'k'],
    ['kubectl', 'exec', '-it', 'db-0', '--', 'psql', `--password=${M}`, '--username', 'app', '--api-key', M],
  ],
  [
    'mysql -pSECRET after --',
    ['kubectl', 'exec', 'mysql-0', '--', 'mysql', '-uroot', '-phunter2', '-e', 'show databases'],
    ['kubectl', 'exec', 'mysql-0', '--', 'mysql', '-uroot', `-p${M}`, '-e', 'show databases'],
  ],
  [
    'a shell string after -- with an export, a header and curl -u',
    [
      'kubectl',
      'exec',
      'tools',
      '--',
      'sh',
      '-c',
      'export TOKEN=abc; curl -H "Authorization: Bearer abc" -u admin:pw https://api.internal/',
    ],
    [
      'kubectl',
      'exec',
      'tools',
      '--',
      'sh',
      '-c',
      `export TOKEN=${M}; curl -H "Authorization: ${M}" -u admin:${M} https://api.internal/`,
    ],
  ],
  [
    'curl -H Authorization as its own argument after --',
    [
      'kubectl',
      'exec',
      'tools',
      '--',
      'curl',
      '-H',
      'Authorization: Bearer abc',
      '-u',
      'admin:pw',
      'http://svc',
    ],
    ['kubectl', 'exec', 'tools', '--', 'curl', '-H', `Authorization: ${M}`, '-u', `admin:${M}`, 'http://svc'],
  ],
  [
    'a basic-auth server URL, = form',
    ['kubectl', '--server=https://admin:pw@10.0.0.1:6443', 'get', 'ns'],
    ['kubectl', `--server=https://admin:${M}@10.0.0.1:6443`, 'get', 'ns'],
  ],
  [
    'an OCI chart reference with credentials',
    ['helm', 'pull', 'oci://bot:ghp_x@ghcr.io/acme/charts/web', '--version', '1.2.3'],
    ['helm', 'pull', `oci://bot:${M}@ghcr.io/acme/charts/web`, '--version', '1.2.3'],
  ],
  [
    'a header flag with a credential, = form',
    ['kubectl', 'get', '--raw', '/healthz', '--header=Authorization: Bearer abc'],
    ['kubectl', 'get', '--raw', '/healthz', `--header=Authorization: ${M}`],
  ],
  [
    'kubectl run --overrides JSON with a secret key',
    [
      'kubectl',
      'run',
      'x',
      '--image=a',
      '--overrides={"metadata":{"annotations":{"apiKey":"k","team":"a"}}}',
    ],
    [
      'kubectl',
      'run',
      'x',
      '--image=a',
      `--overrides={"metadata":{"annotations":{"apiKey":"${M}","team":"a"}}}`,
    ],
  ],
  [
    'a secret flag as the last argument (no value) stays',
    ['kubectl', 'get', 'ns', '--token'],
    ['kubectl', 'get', 'ns', '--token'],
  ],
  [
    'a label value named token',
    ['kubectl', 'label', 'ns', 'dev', 'owner=ops', 'token=abc'],
    ['kubectl', 'label', 'ns', 'dev', 'owner=ops', `token=${M}`],
  ],
  [
    'kubectl create token: the output is a token, argv is not',
    ['kubectl', 'create', 'token', 'builder', '--duration=1h', '--bound-object-kind', 'Secret'],
    ['kubectl', 'create', 'token', 'builder', '--duration=1h', '--bound-object-kind', 'Secret'],
  ],
  [
    'an impersonation is kept (the apiserver decides, the record shows the attempt)',
    ['kubectl', '--as=system:admin', '--as-group', 'system:masters', 'get', 'secrets'],
    ['kubectl', '--as=system:admin', '--as-group', 'system:masters', 'get', 'secrets'],
  ],
];

describe('redactArgv', () => {
  it('has a table of at least 30 command lines', () => {
    expect(TABLE.length).toBeGreaterThanOrEqual(30);
  });

  it.each(TABLE)('%s', (_about, argv, stored) => {
    const r = redactArgv(argv);
    expect(r.argv).toEqual(stored);
    expect(r.redacted).toBe(JSON.stringify(argv) !== JSON.stringify(stored));
  });

  it('never lets a secret value of the table through', () => {
    const secrets = [
      'hunter2',
      'eyJhbGciOi',
      's3cr3t',
      'ghp_',
      'hvs.abc',
      'a=b=c',
      'aHVudGVy',
      'LS0tLS',
      'Bearer',
    ];
    for (const [, argv] of TABLE) {
      const stored = JSON.stringify(redactArgv(argv).argv);
      for (const s of secrets) expect(stored).not.toContain(s);
    }
  });

  it('does not throw on odd input', () => {
    for (const argv of [
      [],
      ['kubectl'],
      ['helm', '--'],
      ['kubectl', '-'],
      ['kubectl', '--='],
      ['kubectl', '-p'],
    ])
      expect(() => redactArgv(argv)).not.toThrow();
  });
});

describe('isSecretName', () => {
  it.each([
    'password',
    'DB_PASSWORD',
    'PGPASSWORD',
    'dbPassword',
    'api-key',
    'apiKey',
    'X_API_KEY',
    'client-secret',
    'access_token',
    'private-key',
    'passphrase',
    'credentials',
    'id-token',
    'client-certificate-data',
  ])('%s is a secret name', (n) => {
    expect(isSecretName(n)).toBe(true);
  });

  it.each([
    'username',
    'namespace',
    'passthrough',
    'bypass',
    'key',
    'image',
    'monkey',
    'keyring',
    'from-file',
  ])('%s is not', (n) => {
    expect(isSecretName(n)).toBe(false);
  });
});

describe('scrubText', () => {
  it('hides URL passwords, headers and secret pairs in free text', () => {
    expect(scrubText('postgres://app:pw@db:5432/app', false)).toBe(`postgres://app:${M}@db:5432/app`);
    expect(scrubText('Proxy-Authorization: Basic YWJj', false)).toBe(`Proxy-Authorization: ${M}`);
    expect(scrubText('a=1,secret=2', false)).toBe(`a=1,secret=${M}`);
    expect(scrubText('run --db-password hunter2 now', false)).toBe(`run --db-password ${M} now`);
    expect(scrubText('https://example.com/path?a=b', false)).toBe('https://example.com/path?a=b');
  });
});
