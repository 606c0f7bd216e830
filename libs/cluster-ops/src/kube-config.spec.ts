import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { LeanKubeConfig } from './kube-config';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function kubeconfig(user: Record<string, unknown>, cluster: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'ctx',
    contexts: [{ name: 'ctx', context: { cluster: 'c1', user: 'u1' } }],
    clusters: [
      {
        name: 'c1',
        cluster: { server: 'https://api.example:6443', 'certificate-authority-data': b64('CA'), ...cluster },
      },
    ],
    users: [{ name: 'u1', user }],
  });
}

type Opts = Record<string, unknown> & { headers: Record<string, string | string[]> };
async function applied(kc: LeanKubeConfig): Promise<Opts> {
  const opts: Opts = { headers: {} };
  await kc.applyToHTTPSOptions(opts);
  return opts;
}

describe(LeanKubeConfig.name, () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'lean-kc-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('applies a bearer token, the CA, the TLS server name and one shared keep-alive agent', async () => {
    const kc = LeanKubeConfig.fromString(kubeconfig({ token: 'tok-1' }, { 'tls-server-name': 'kubernetes' }));
    expect(kc.getCurrentCluster()).toMatchObject({ name: 'c1', server: 'https://api.example:6443' });
    const a = await applied(kc);
    expect(a.headers.Authorization).toBe('Bearer tok-1');
    expect((a.ca as Buffer).toString()).toBe('CA');
    expect(a.servername).toBe('kubernetes');
    expect(a.rejectUnauthorized).toBeUndefined();
    expect(a.agent).toBeInstanceOf(HttpsAgent);
    const b = await applied(kc);
    expect(b.agent).toBe(a.agent);
    expect((a.agent as HttpsAgent).maxSockets).toBe(64);
    expect(kc.delegatedFor).toBeUndefined();
    kc.close();
  });

  it('applies client certificates from data and from files relative to the kubeconfig', async () => {
    const fromData = await applied(
      LeanKubeConfig.fromString(
        kubeconfig({ 'client-certificate-data': b64('CERT'), 'client-key-data': b64('KEY') }),
      ),
    );
    expect((fromData.cert as Buffer).toString()).toBe('CERT');
    expect((fromData.key as Buffer).toString()).toBe('KEY');
    expect(fromData.headers.Authorization).toBeUndefined();

    writeFileSync(join(dir, 'c.crt'), 'FILECERT');
    writeFileSync(join(dir, 'c.key'), 'FILEKEY');
    writeFileSync(join(dir, 'ca.crt'), 'FILECA');
    const fromFiles = await applied(
      LeanKubeConfig.fromString(
        kubeconfig(
          { 'client-certificate': 'c.crt', 'client-key': join(dir, 'c.key') },
          { 'certificate-authority-data': undefined, 'certificate-authority': 'ca.crt' },
        ),
        dir,
      ),
    );
    expect((fromFiles.cert as Buffer).toString()).toBe('FILECERT');
    expect((fromFiles.key as Buffer).toString()).toBe('FILEKEY');
    expect((fromFiles.ca as Buffer).toString()).toBe('FILECA');
  });

  it('honours insecure-skip-tls-verify, basic auth and impersonation (as)', async () => {
    const a = await applied(
      LeanKubeConfig.fromString(
        kubeconfig({ username: 'bob', password: 'pw', as: 'alice' }, { 'insecure-skip-tls-verify': true }),
      ),
    );
    expect(a.rejectUnauthorized).toBe(false);
    expect(a.auth).toBe('bob:pw');
    expect(a.headers['Impersonate-User']).toBe('alice');
  });

  it('uses no HTTPS agent for an http:// server', async () => {
    const a = await applied(
      LeanKubeConfig.fromString(kubeconfig({ token: 't' }, { server: 'http://127.0.0.1:8080' })),
    );
    expect(a.agent).toBeUndefined();
    expect(a.headers.Authorization).toBe('Bearer t');
  });

  it('hands exec plugins, auth providers and proxies to client-node, as before', () => {
    const exec = LeanKubeConfig.fromString(
      kubeconfig({
        exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'printf', args: ['{}'] },
      }),
    );
    expect(exec.delegatedFor).toBe('exec');
    expect(
      LeanKubeConfig.fromString(kubeconfig({ 'auth-provider': { name: 'oidc', config: {} } })).delegatedFor,
    ).toBe('auth-provider');
    expect(
      LeanKubeConfig.fromString(kubeconfig({ token: 't' }, { 'proxy-url': 'http://proxy:3128' }))
        .delegatedFor,
    ).toBe('proxy-url');
    // The same config in client-node: same cluster and user.
    const full = exec.clientNode();
    expect(full.getCurrentCluster()?.server).toBe('https://api.example:6443');
    expect(full.getCurrentUser()?.exec).toMatchObject({ command: 'printf' });
    expect(exec.clientNode()).toBe(full);
  });

  it('loads like client-node: KUBECONFIG files merged (first wins), else ~/.kube/config, else the ServiceAccount', async () => {
    const first = join(dir, 'a.yaml');
    const second = join(dir, 'b.yaml');
    writeFileSync(first, kubeconfig({ token: 'from-a' }));
    writeFileSync(
      second,
      JSON.stringify({
        'current-context': 'other',
        contexts: [{ name: 'ctx', context: { cluster: 'c1', user: 'u1' } }],
        clusters: [{ name: 'c1', cluster: { server: 'https://b.example' } }],
        users: [{ name: 'u1', user: { token: 'from-b' } }],
      }),
    );
    const merged = LeanKubeConfig.loadFromDefault({ KUBECONFIG: `${first}:${second}` }, join(dir, 'no-sa'));
    expect(merged.getCurrentCluster().server).toBe('https://api.example:6443');
    expect((await applied(merged)).headers.Authorization).toBe('Bearer from-a');

    const home = join(dir, 'home');
    mkdirSync(join(home, '.kube'), { recursive: true });
    writeFileSync(join(home, '.kube', 'config'), kubeconfig({ token: 'from-home' }));
    expect(
      (await applied(LeanKubeConfig.loadFromDefault({ HOME: home }, join(dir, 'no-sa')))).headers
        .Authorization,
    ).toBe('Bearer from-home');

    const sa = join(dir, 'sa');
    mkdirSync(sa);
    writeFileSync(join(sa, 'token'), 'sa-token\n');
    writeFileSync(join(sa, 'ca.crt'), 'SACA');
    const inCluster = LeanKubeConfig.loadFromDefault(
      { HOME: join(dir, 'nohome'), KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' },
      sa,
    );
    expect(inCluster.getCurrentCluster().server).toBe('https://[fd00::1]:443');
    const a = await applied(inCluster);
    expect(a.headers.Authorization).toBe('Bearer sa-token');
    expect((a.ca as Buffer).toString()).toBe('SACA');
    inCluster.close();

    expect(
      LeanKubeConfig.loadFromDefault({ HOME: join(dir, 'nohome') }, join(dir, 'no-sa')).getCurrentCluster()
        .server,
    ).toBe('http://localhost:8080');
  });

  it('loads a kubeconfig file with another context, and the ServiceAccount, as client-node does', async () => {
    mkdirSync(join(dir, 'pki'));
    writeFileSync(join(dir, 'pki', 'ca.crt'), 'FILECA');
    const file = join(dir, 'kc.yaml');
    writeFileSync(
      file,
      JSON.stringify({
        'current-context': 'one',
        contexts: [
          { name: 'one', context: { cluster: 'c1', user: 'u1' } },
          { name: 'two', context: { cluster: 'c2', user: 'u2' } },
        ],
        clusters: [
          { name: 'c1', cluster: { server: 'https://one.example' } },
          { name: 'c2', cluster: { server: 'https://two.example', 'certificate-authority': 'pki/ca.crt' } },
        ],
        users: [
          { name: 'u1', user: { token: 't1' } },
          { name: 'u2', user: { token: 't2' } },
        ],
      }),
    );
    expect(LeanKubeConfig.loadFromFile(file).getCurrentCluster().server).toBe('https://one.example');
    const two = LeanKubeConfig.loadFromFile(file, 'two');
    expect(two.getCurrentCluster()).toMatchObject({
      server: 'https://two.example',
      caFile: join(dir, 'pki/ca.crt'),
    });
    const a = await applied(two);
    expect(a.headers.Authorization).toBe('Bearer t2');
    expect((a.ca as Buffer).toString()).toBe('FILECA');
    // client-node, loaded for the generated API, sees the same cluster and user
    const full = two.clientNode();
    expect(full.getCurrentCluster()?.server).toBe('https://two.example');
    expect(full.getCurrentUser()?.token).toBe('t2');
    two.close();
    expect(() => LeanKubeConfig.loadFromFile(file, 'three')).toThrow(/current-context "three" is not among/);
    expect(() => LeanKubeConfig.loadFromFile(join(dir, 'missing'))).toThrow(
      /cannot read the kubeconfig .*fix kubeconfigPath/,
    );

    const sa = join(dir, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'token'), 'sa-token\n');
    writeFileSync(join(sa, 'ca.crt'), 'SACA');
    const env = { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' };
    const inCluster = LeanKubeConfig.loadFromCluster(env, sa);
    expect(inCluster.getCurrentCluster().server).toBe('https://10.0.0.1:443');
    expect((await applied(inCluster)).headers.Authorization).toBe('Bearer sa-token');
    const fullInCluster = inCluster.clientNode();
    expect(fullInCluster.getCurrentCluster()).toMatchObject({
      server: 'https://10.0.0.1:443',
      caFile: join(sa, 'ca.crt'),
    });
    inCluster.close();
    // like client-node's loadFromCluster, outside a pod it loads and its calls fail
    expect(LeanKubeConfig.loadFromCluster({}, sa).getCurrentCluster().server).toBe(
      'https://undefined:undefined',
    );
  });

  it('takes a bearer token that its owner replaces, and client-node follows it (an EKS token)', () => {
    const kc = LeanKubeConfig.withToken({
      name: 'prod',
      server: 'https://eks.example',
      caPem: 'PEM',
      token: 'a',
    });
    expect(kc.getCurrentCluster()).toMatchObject({
      name: 'prod',
      server: 'https://eks.example',
      caData: b64('PEM'),
    });
    expect(kc.getCurrentUser().token).toBe('a');
    const full = kc.clientNode();
    expect(full.getCurrentUser()?.token).toBe('a');
    kc.setToken('b');
    expect(kc.getCurrentUser().token).toBe('b');
    expect(full.getCurrentUser()?.token).toBe('b');
    expect(full.getCurrentCluster()?.caData).toBe(b64('PEM'));
  });

  it('re-reads a token file at most once a minute (a projected token rotates)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const tokenFile = join(dir, 'token');
      writeFileSync(tokenFile, 'first');
      const kc = LeanKubeConfig.fromString(kubeconfig({ tokenFile }));
      expect((await applied(kc)).headers.Authorization).toBe('Bearer first');
      writeFileSync(tokenFile, 'second');
      expect((await applied(kc)).headers.Authorization).toBe('Bearer first');
      vi.setSystemTime(Date.now() + 61_000);
      expect((await applied(kc)).headers.Authorization).toBe('Bearer second');
      kc.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('says what to fix in a kubeconfig it cannot use', () => {
    expect(() => LeanKubeConfig.fromString('clusters: [')).toThrow(/not valid YAML/);
    expect(() => LeanKubeConfig.fromString(JSON.stringify({ contexts: [] }))).toThrow(/no current-context/);
    expect(() => LeanKubeConfig.fromString(JSON.stringify({ 'current-context': 'x', contexts: [] }))).toThrow(
      /current-context "x" is not among its contexts/,
    );
    expect(() => LeanKubeConfig.loadFromDefault({ KUBECONFIG: join(dir, 'missing') })).toThrow(
      /cannot read the kubeconfig .*missing.*fix KUBECONFIG/,
    );
    const sa = join(dir, 'sa2');
    mkdirSync(sa);
    writeFileSync(join(sa, 'token'), 't');
    expect(() => LeanKubeConfig.loadFromDefault({ HOME: join(dir, 'nohome') }, sa)).toThrow(
      /KUBERNETES_SERVICE_HOST\/PORT are not set/,
    );
  });
});
