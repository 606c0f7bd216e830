import { readFileSync, statSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import { isIPv6 } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';

import type { Cluster, KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';

/**
 * What this library's raw apiserver calls (kube-http.ts, exec/, pod watches) need of a kubeconfig:
 * the current cluster's URL and the TLS and auth options of a request. `makeApiClient` is for the
 * paths still written against `@kubernetes/client-node`'s generated API (shell provisioning, the
 * access check, the cluster-CA lookup). A client-node `KubeConfig` is one; so is `LeanKubeConfig`,
 * which loads client-node only when `makeApiClient` (or an exec / auth-provider user) needs it.
 */
export type KubeAccess = Pick<KubeConfig, 'getCurrentCluster' | 'applyToHTTPSOptions' | 'makeApiClient'>;

/** `@kubernetes/client-node`, loaded on first use (≈ 26 MiB of heap, 0.8 s on a busy core). */
export function clientNode(): typeof import('@kubernetes/client-node') {
  // A synchronous require on purpose: the paths that need the library are synchronous
  // (constructors, client-node's own `send`), and it is cached after the first call.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('@kubernetes/client-node') as typeof import('@kubernetes/client-node');
}

/** client-node's file locations (loadFromDefault / loadFromCluster), for the same behaviour. */
export const SERVICEACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** a projected token is re-read at most this often (kubelet rotates it well before expiry) */
const TOKEN_FILE_TTL_MS = 60_000;

interface RawNamed<T> {
  name?: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}
interface RawKubeconfig {
  clusters?: RawNamed<Record<string, unknown>>[];
  users?: RawNamed<Record<string, unknown>>[];
  contexts?: RawNamed<Record<string, unknown>>[];
  'current-context'?: unknown;
}

interface LeanUser {
  name: string;
  token?: string;
  tokenFile?: string;
  certData?: string;
  certFile?: string;
  keyData?: string;
  keyFile?: string;
  username?: string;
  password?: string;
  impersonateUser?: string;
  /**
   * what only client-node handles (an `exec` plugin, an `auth-provider`, a cluster's
   * `proxy-url`): every call of such a config goes through client-node, as it always did
   */
  delegate?: 'exec' | 'auth-provider' | 'proxy-url';
}

/** Where a config came from, so client-node can load exactly the same one when it is needed. */
type Source =
  | { kind: 'default'; env: NodeJS.ProcessEnv }
  | { kind: 'text'; text: string; dir: string }
  | { kind: 'file'; path: string; context?: string }
  | { kind: 'cluster'; env: NodeJS.ProcessEnv; saDir: string }
  | { kind: 'token' };

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const fileExists = (p: string): boolean => {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
};
const abs = (dir: string, p: string | undefined): string | undefined =>
  p === undefined || isAbsolute(p) ? p : join(dir, p);

/**
 * A kubeconfig / in-cluster loader without `@kubernetes/client-node`, for the agent, whose every
 * steady-state call is a raw HTTP or WebSocket call (kube-http.ts, exec/). It finds the config as
 * client-node's `loadFromDefault` does (the files in `KUBECONFIG`, merged with the first file
 * winning; else `~/.kube/config`; else the pod's ServiceAccount; else `http://localhost:8080`) and
 * applies the same TLS and auth options: CA (data or file), `insecure-skip-tls-verify`,
 * `tls-server-name`, client certificate and key (data or file), bearer token or token file
 * (re-read at most once a minute, as a projected token rotates), basic auth, `as`
 * (Impersonate-User). Users with an `exec` plugin or an `auth-provider` are handed to client-node,
 * loaded for that (the plugin runs exactly as before). One keep-alive HTTPS agent with a bounded
 * pool serves every call.
 */
export class LeanKubeConfig implements KubeAccess {
  private full: KubeConfig | undefined;
  private agent: HttpsAgent | undefined;
  private tokenCache: { token: string; at: number } | undefined;

  private constructor(
    private readonly cluster: Cluster,
    private readonly user: LeanUser,
    private readonly source: Source,
  ) {}

  /** Like client-node's `loadFromDefault()`; throws with what to fix when a file cannot be used. */
  static loadFromDefault(env: NodeJS.ProcessEnv = process.env, saDir = SERVICEACCOUNT_DIR): LeanKubeConfig {
    const files = (env.KUBECONFIG ?? '').split(delimiter).filter((f) => f !== '');
    const home = env.HOME ?? homedir();
    if (files.length === 0 && home !== '' && fileExists(join(home, '.kube', 'config')))
      files.push(join(home, '.kube', 'config'));
    const source: Source = { kind: 'default', env };
    if (files.length > 0) {
      const parsed = files.map((f) => {
        let text: string;
        try {
          text = readFileSync(f, 'utf8');
        } catch (err) {
          throw new Error(`cannot read the kubeconfig ${f}: ${(err as Error).message}; fix KUBECONFIG`, {
            cause: err,
          });
        }
        return { raw: LeanKubeConfig.parse(text, f), dir: dirname(f) };
      });
      return LeanKubeConfig.pick(parsed, source);
    }
    if (fileExists(join(saDir, 'token'))) return LeanKubeConfig.inCluster(env, saDir, source);
    return new LeanKubeConfig(
      { name: 'cluster', server: 'http://localhost:8080', skipTLSVerify: false },
      { name: 'user' },
      source,
    );
  }

  /**
   * A kubeconfig file, as client-node's `loadFromFile` (relative paths resolve against the file's
   * folder), with `context` in place of its current-context when given (`setCurrentContext`).
   */
  static loadFromFile(path: string, context?: string): LeanKubeConfig {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`cannot read the kubeconfig ${path}: ${(err as Error).message}; fix kubeconfigPath`, {
        cause: err,
      });
    }
    const source: Source = { kind: 'file', path, ...(context !== undefined ? { context } : {}) };
    return LeanKubeConfig.pick(
      [{ raw: LeanKubeConfig.parse(text, path), dir: dirname(path) }],
      source,
      context,
    );
  }

  /**
   * The pod's ServiceAccount, as client-node's `loadFromCluster()`: like it, it does not check that
   * it runs in a pod (outside one, calls fail: no token file, no KUBERNETES_SERVICE_HOST).
   */
  static loadFromCluster(env: NodeJS.ProcessEnv = process.env, saDir = SERVICEACCOUNT_DIR): LeanKubeConfig {
    return LeanKubeConfig.inCluster(env, saDir, { kind: 'cluster', env, saDir }, false);
  }

  /**
   * One cluster reached with a bearer token that its owner replaces (`setToken`), e.g. an EKS
   * token renewed every 10 minutes: what client-node's `loadFromOptions` made for the EKS gateway.
   */
  static withToken(opts: { name: string; server: string; caPem: string; token: string }): LeanKubeConfig {
    return new LeanKubeConfig(
      {
        name: opts.name,
        server: opts.server,
        caData: Buffer.from(opts.caPem).toString('base64'),
        skipTLSVerify: false,
      },
      { name: 'eks', token: opts.token },
      { kind: 'token' },
    );
  }

  /** Replaces the bearer token (a `withToken` config); client-node's config, if made, follows. */
  setToken(token: string): void {
    this.user.token = token;
    if (this.full && this.source.kind === 'token') this.loadTokenConfig(this.full);
  }

  /** The current user's name and token (diagnostics, tests), as client-node's `getCurrentUser`. */
  getCurrentUser(): { name: string; token?: string } {
    return { name: this.user.name, ...(this.user.token !== undefined ? { token: this.user.token } : {}) };
  }

  private loadTokenConfig(kc: KubeConfig): void {
    kc.loadFromOptions({
      clusters: [{ name: this.cluster.name, server: this.cluster.server, caData: this.cluster.caData }],
      users: [{ name: this.user.name, token: this.user.token }],
      contexts: [{ name: this.user.name, cluster: this.cluster.name, user: this.user.name }],
      currentContext: this.user.name,
    });
  }

  /** A kubeconfig document (relative file paths resolve against `dir`). */
  static fromString(text: string, dir = process.cwd()): LeanKubeConfig {
    return LeanKubeConfig.pick([{ raw: LeanKubeConfig.parse(text, 'the kubeconfig'), dir }], {
      kind: 'text',
      text,
      dir,
    });
  }

  private static parse(text: string, what: string): RawKubeconfig {
    let doc: unknown;
    try {
      doc = parseYaml(text, { maxAliasCount: 100 });
    } catch (err) {
      throw new Error(`${what} is not valid YAML: ${(err as Error).message}`, { cause: err });
    }
    if (doc === null || doc === undefined) return {};
    if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`${what} is not a kubeconfig mapping`);
    return doc;
  }

  /** The current context's cluster and user; of entries with the same name the first file's wins. */
  private static pick(
    files: { raw: RawKubeconfig; dir: string }[],
    source: Source,
    context?: string,
  ): LeanKubeConfig {
    const find = (
      key: 'clusters' | 'users' | 'contexts',
      name: string,
    ): { entry: Record<string, unknown>; dir: string } | undefined => {
      for (const f of files) {
        const list = f.raw[key];
        if (!Array.isArray(list)) continue;
        const inner = key === 'clusters' ? 'cluster' : key === 'users' ? 'user' : 'context';
        const hit = list.find((e) => e.name === name);
        if (hit) return { entry: hit[inner] ?? {}, dir: f.dir };
      }
      return undefined;
    };
    const current = context ?? files.map((f) => str(f.raw['current-context'])).find((c) => c !== undefined);
    if (current === undefined)
      throw new Error('the kubeconfig has no current-context; set one (kubectl config use-context)');
    const ctx = find('contexts', current);
    if (!ctx) throw new Error(`the kubeconfig's current-context "${current}" is not among its contexts`);
    const clusterName = str(ctx.entry.cluster) ?? '';
    const userName = str(ctx.entry.user) ?? '';
    const c = find('clusters', clusterName);
    if (!c)
      throw new Error(`the kubeconfig's context "${current}" names cluster "${clusterName}", which it lacks`);
    const server = str(c.entry.server);
    if (server === undefined) throw new Error(`the kubeconfig's cluster "${clusterName}" has no server`);
    const cluster: Cluster = {
      name: clusterName,
      server,
      skipTLSVerify: c.entry['insecure-skip-tls-verify'] === true,
      ...(str(c.entry['certificate-authority-data']) !== undefined
        ? { caData: str(c.entry['certificate-authority-data']) }
        : {}),
      ...(str(c.entry['certificate-authority']) !== undefined
        ? { caFile: abs(c.dir, str(c.entry['certificate-authority'])) }
        : {}),
      ...(str(c.entry['tls-server-name']) !== undefined
        ? { tlsServerName: str(c.entry['tls-server-name']) }
        : {}),
    };
    const u = find('users', userName);
    const e = u?.entry ?? {};
    const dir = u?.dir ?? '.';
    const user: LeanUser = { name: userName };
    const set = (k: keyof LeanUser, v: string | undefined): void => {
      if (v !== undefined) (user as unknown as Record<string, string>)[k] = v;
    };
    set('token', str(e.token));
    set('tokenFile', abs(dir, str(e.tokenFile)));
    set('certData', str(e['client-certificate-data']));
    set('certFile', abs(dir, str(e['client-certificate'])));
    set('keyData', str(e['client-key-data']));
    set('keyFile', abs(dir, str(e['client-key'])));
    set('username', str(e.username));
    set('password', str(e.password));
    set('impersonateUser', str(e.as));
    if (e.exec !== undefined && e.exec !== null) user.delegate = 'exec';
    else if (e['auth-provider'] !== undefined && e['auth-provider'] !== null) user.delegate = 'auth-provider';
    else if (str(c.entry['proxy-url']) !== undefined) user.delegate = 'proxy-url';
    return new LeanKubeConfig(cluster, user, source);
  }

  /** The pod's ServiceAccount, as client-node's `loadFromCluster()`. */
  private static inCluster(
    env: NodeJS.ProcessEnv,
    saDir: string,
    source: Source,
    strict = true,
  ): LeanKubeConfig {
    const host = env.KUBERNETES_SERVICE_HOST;
    const port = env.KUBERNETES_SERVICE_PORT;
    if (strict && (!host || !port))
      throw new Error(
        'running in a pod (a ServiceAccount token is mounted) but KUBERNETES_SERVICE_HOST/PORT are not set; set KUBECONFIG instead',
      );
    const scheme = ['80', '8080', '8001'].includes(port ?? '') ? 'http' : 'https';
    return new LeanKubeConfig(
      {
        name: 'inCluster',
        server: `${scheme}://${host !== undefined && isIPv6(host) ? `[${host}]` : String(host)}:${String(port)}`,
        caFile: join(saDir, 'ca.crt'),
        skipTLSVerify: false,
      },
      { name: 'inClusterUser', tokenFile: join(saDir, 'token') },
      source,
    );
  }

  getCurrentCluster(): Cluster {
    return this.cluster;
  }

  /** What makes every call go through client-node (an exec plugin, …), or undefined; for tests and logs. */
  get delegatedFor(): LeanUser['delegate'] {
    return this.user.delegate;
  }

  /**
   * client-node's `KubeConfig` for the same config, created on first use: for `makeApiClient`
   * and for exec / auth-provider users.
   */
  clientNode(): KubeConfig {
    if (this.full) return this.full;
    const kc = new (clientNode().KubeConfig)();
    const source = this.source;
    const withEnv = (env: NodeJS.ProcessEnv, load: () => void): void => {
      const saved = process.env;
      // client-node reads process.env; give it the environment this config was found with
      // (another one only in tests).
      if (env !== saved) process.env = env;
      try {
        load();
      } finally {
        process.env = saved;
      }
    };
    switch (source.kind) {
      case 'text':
        kc.loadFromString(source.text);
        kc.makePathsAbsolute(source.dir);
        break;
      case 'file':
        kc.loadFromFile(source.path);
        if (source.context !== undefined) kc.setCurrentContext(source.context);
        break;
      case 'cluster': {
        // client-node takes a prefix of its fixed paths (tests put the folder elsewhere)
        const prefix = source.saDir.endsWith(SERVICEACCOUNT_DIR)
          ? source.saDir.slice(0, source.saDir.length - SERVICEACCOUNT_DIR.length)
          : '';
        withEnv(source.env, () => {
          kc.loadFromCluster(prefix);
        });
        break;
      }
      case 'token':
        this.loadTokenConfig(kc);
        break;
      case 'default':
        withEnv(source.env, () => {
          kc.loadFromDefault();
        });
        break;
    }
    this.full = kc;
    return kc;
  }

  makeApiClient: KubeConfig['makeApiClient'] = (apiClientType) =>
    this.clientNode().makeApiClient(apiClientType);

  private bearer(): string | undefined {
    if (this.user.token !== undefined) return this.user.token;
    const file = this.user.tokenFile;
    if (file === undefined) return undefined;
    const now = Date.now();
    if (this.tokenCache && now - this.tokenCache.at < TOKEN_FILE_TTL_MS) return this.tokenCache.token;
    const token = readFileSync(file, 'utf8').trim();
    this.tokenCache = { token, at: now };
    return token;
  }

  /**
   * Sets TLS options, the Authorization header and a shared keep-alive agent on `opts`, as
   * client-node's method of the same name does for the users it handles itself.
   */
  async applyToHTTPSOptions(opts: Parameters<KubeConfig['applyToHTTPSOptions']>[0]): Promise<void> {
    if (this.user.delegate !== undefined) {
      await this.clientNode().applyToHTTPSOptions(opts);
      return;
    }
    const o = opts as Record<string, unknown> & { headers?: Record<string, unknown> };
    const tls = this.tlsOptions();
    Object.assign(o, tls);
    o.headers ??= {};
    const token = this.bearer();
    if (token !== undefined) o.headers.Authorization = `Bearer ${token}`;
    if (this.user.username !== undefined) o.auth = `${this.user.username}:${this.user.password ?? ''}`;
    if (this.user.impersonateUser !== undefined) o.headers['Impersonate-User'] = this.user.impersonateUser;
    // http:// (a local apiserver's insecure port, kubectl proxy) takes Node's global agent.
    if (this.cluster.server.startsWith('https:')) o.agent = this.sharedAgent(tls);
  }

  private tlsOptions(): {
    ca?: Buffer;
    cert?: Buffer;
    key?: Buffer;
    rejectUnauthorized?: boolean;
    servername?: string;
  } {
    const load = (file: string | undefined, data: string | undefined): Buffer | undefined =>
      file !== undefined ? readFileSync(file) : data !== undefined ? Buffer.from(data, 'base64') : undefined;
    const out: ReturnType<LeanKubeConfig['tlsOptions']> = {};
    const ca = load(this.cluster.caFile, this.cluster.caData);
    const cert = load(this.user.certFile, this.user.certData);
    const key = load(this.user.keyFile, this.user.keyData);
    if (ca) out.ca = ca;
    if (cert) out.cert = cert;
    if (key) out.key = key;
    if (this.cluster.skipTLSVerify) out.rejectUnauthorized = false;
    if (this.cluster.tlsServerName !== undefined) out.servername = this.cluster.tlsServerName;
    return out;
  }

  /**
   * One keep-alive agent for every call of this config (client-node made a new agent, so a new
   * TLS connection, per call): at most 64 sockets (watches hold one each), 4 kept idle, an idle
   * one closed after 30 s. Re-made when a file it
   * was built from (CA, certificate, key) changed content.
   */
  private sharedAgent(tls: ReturnType<LeanKubeConfig['tlsOptions']>): HttpsAgent {
    const key = (b: Buffer | undefined): string => (b ? b.toString('base64') : '');
    const id = `${key(tls.ca)}|${key(tls.cert)}|${key(tls.key)}`;
    if (this.agent && this.agentId === id) return this.agent;
    this.agent?.destroy();
    this.agentId = id;
    this.agent = new HttpsAgent({
      ...tls,
      keepAlive: true,
      keepAliveMsecs: 30_000,
      maxSockets: 64,
      maxFreeSockets: 4,
      timeout: 30_000,
      scheduling: 'lifo',
    });
    return this.agent;
  }
  private agentId = '';

  /** Closes the idle keep-alive sockets (at shutdown). */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }
}
