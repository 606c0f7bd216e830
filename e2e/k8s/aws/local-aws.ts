import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The local AWS of the eks backend's tests, started only by the specs that need it (never by the
 * global setup), each piece on 127.0.0.1 with a start deadline and a `stop()`:
 *
 * - `startLocalAws`: moto (PyPI, installed by scripts/setup.sh into a venv) in server mode serving
 *   EKS DescribeCluster and STS GetCallerIdentity / AssumeRole / AssumeRoleWithWebIdentity, seeded
 *   with IAM users (static keys), roles, and EKS clusters whose endpoint and CA are the local
 *   kube-apiserver's (e2e/k8s/aws/moto_server.py). Its STS verifies the SigV4 signature of a
 *   presigned GetCallerIdentity (what an EKS token is); moto alone verifies none.
 * - `startEksAuthenticator`: the apiserver's webhook token authenticator for `k8s-aws-v1.`
 *   tokens, doing what EKS's aws-iam-authenticator does: check the token's shape, call STS
 *   GetCallerIdentity with the presigned request (the cluster ID as the `x-k8s-aws-id` header),
 *   and map the caller's canonical ARN to a Kubernetes user and groups (an access-entry-like
 *   mapping). A harness stand-in, not the real aws-iam-authenticator: its verifier calls the
 *   token's own https://sts.<region>.amazonaws.com URL, which is no permitted network target
 *   here; building it and redirecting that call to the local STS has not been done.
 * - `startPodIdentityAgent`: the EKS Pod Identity agent's container-credentials endpoint
 *   (AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE), vending
 *   credentials of a role assumed in moto (the real agent calls eks-auth AssumeRoleForPodIdentity).
 */

const START_DEADLINE_MS = 60_000;
const STS_DEADLINE_MS = 10_000;
/** reviews kept for assertions (bounded) */
const MAX_REVIEWS = 200;

export function motoPython(): string {
  const venv =
    process.env['PERISCOPE_MOTO_VENV'] ??
    join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'periscope-moto', 'venv');
  const py = join(venv, 'bin', 'python');
  if (!existsSync(py))
    throw new Error(
      `moto is not installed (no ${py}): run scripts/setup.sh, which installs it into that venv (or set PERISCOPE_MOTO_VENV)`,
    );
  return py;
}

export interface LocalAwsConfig {
  account?: string;
  clusters: { name: string; region: string; endpoint: string; caPem: string; publicAccess?: boolean }[];
  users?: string[];
  roles?: string[];
  /** users refused eks:DescribeCluster (AccessDeniedException) */
  deny?: string[];
  /** users whose credentials are expired (ExpiredTokenException) */
  expired?: string[];
}

export interface LocalAws {
  endpoint: string;
  port: number;
  users: Record<string, { accessKeyId: string; secretAccessKey: string; arn: string }>;
  roles: Record<string, string>;
  /** the emulator's log (bounded), for failure messages */
  logTail: () => string;
  stop: () => Promise<void>;
}

export async function startLocalAws(cfg: LocalAwsConfig): Promise<LocalAws> {
  const child = spawn(motoPython(), [join(__dirname, 'moto_server.py'), JSON.stringify(cfg)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  let log = '';
  const keep = (b: Buffer): void => {
    log = (log + b.toString()).slice(-8000);
  };
  child.stderr.on('data', keep);
  let out = '';
  const ready = await new Promise<{
    port: number;
    users: LocalAws['users'];
    roles: Record<string, string>;
  }>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`moto did not start within ${START_DEADLINE_MS} ms:\n${log}`));
    }, START_DEADLINE_MS);
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.slice(0, nl)) as never);
      } catch (err) {
        reject(new Error(`moto said ${out.slice(0, 200)}: ${(err as Error).message}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`moto exited (${code}) before serving:\n${log}`));
    });
  }).catch(async (err: unknown) => {
    await stopChild(child);
    throw err;
  });
  return {
    endpoint: `http://127.0.0.1:${ready.port}`,
    port: ready.port,
    users: ready.users,
    roles: ready.roles,
    logTail: () => log,
    stop: () => stopChild(child),
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
  child.stdin?.end();
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(timer);
}

/** GET/POST to the emulator with a Host header (node's fetch drops it). */
function stsRequest(
  port: number,
  opts: { method: 'GET' | 'POST'; path: string; headers: Record<string, string>; body?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method,
        path: opts.path,
        headers: opts.headers,
        timeout: STS_DEADLINE_MS,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (body.length < 64 * 1024) body += c;
        });
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`STS did not answer within ${STS_DEADLINE_MS} ms`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

const xml = (body: string, tag: string): string | undefined =>
  new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(body)?.[1];

/** arn:aws:sts::A:assumed-role/R/S → arn:aws:iam::A:role/R, as aws-iam-authenticator canonicalizes. */
export function canonicalArn(arn: string): string {
  const m = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/.+$/.exec(arn);
  return m ? `arn:${m[1]}:iam::${m[2]}:role/${m[3]}` : arn;
}

export interface EksMapping {
  /** the IAM user or role ARN (canonical) */
  arn: string;
  username: string;
  groups: string[];
}

export interface TokenReviewSeen {
  authenticated: boolean;
  arn?: string;
  username?: string;
  error?: string;
}

export interface EksAuthenticator {
  /** the kubeconfig for --authentication-token-webhook-config-file */
  webhookConfig: string;
  /** the apiserver flags that use it */
  apiserverArgs: string[];
  setSts: (port: number) => void;
  setMappings: (m: EksMapping[]) => void;
  /** what was decided, newest last (bounded; never the token) */
  reviews: TokenReviewSeen[];
  stop: () => Promise<void>;
}

/** Starts the webhook token authenticator; point the apiserver at it with `apiserverArgs`. */
export async function startEksAuthenticator(opts: {
  clusterId: string;
  dir?: string;
}): Promise<EksAuthenticator> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'periscope-eks-authn-'));
  let stsPort = 0;
  let mappings: EksMapping[] = [];
  const reviews: TokenReviewSeen[] = [];
  const seen = (r: TokenReviewSeen): void => {
    reviews.push(r);
    if (reviews.length > MAX_REVIEWS) reviews.splice(0, reviews.length - MAX_REVIEWS);
  };

  const review = async (token: string): Promise<{ user?: Record<string, unknown>; error?: string }> => {
    // The checks aws-iam-authenticator makes before it calls STS (pkg/token Verify).
    const prefix = 'k8s-aws-v1.';
    if (!token.startsWith(prefix)) return { error: 'token is not a k8s-aws-v1 token' };
    let url: URL;
    try {
      url = new URL(Buffer.from(token.slice(prefix.length), 'base64url').toString());
    } catch {
      return { error: 'token does not decode to a URL' };
    }
    if (url.protocol !== 'https:' || !/^sts(\.[a-z0-9-]+)?\.amazonaws\.com$/.test(url.hostname))
      return { error: `unexpected STS host ${url.hostname}` };
    if (url.pathname !== '/') return { error: 'unexpected path' };
    const q = url.searchParams;
    if (q.get('Action') !== 'GetCallerIdentity') return { error: 'unexpected action' };
    if (!(q.get('X-Amz-SignedHeaders') ?? '').split(';').includes('x-k8s-aws-id'))
      return { error: 'x-k8s-aws-id is not signed' };
    const expires = Number(q.get('X-Amz-Expires'));
    if (!Number.isInteger(expires) || expires > 60 * 15) return { error: 'X-Amz-Expires out of range' };
    const date = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(q.get('X-Amz-Date') ?? '');
    if (!date) return { error: 'no X-Amz-Date' };
    const signedAt = Date.UTC(+date[1]!, +date[2]! - 1, +date[3]!, +date[4]!, +date[5]!, +date[6]!);
    // aws-iam-authenticator accepts a token for 15 minutes after signing.
    if (Date.now() - signedAt > 15 * 60_000) return { error: 'token expired' };
    const res = await stsRequest(stsPort, {
      method: 'GET',
      path: `/${url.search}`,
      headers: { host: url.host, 'x-k8s-aws-id': opts.clusterId, accept: 'application/xml' },
    });
    if (res.status !== 200)
      return { error: `STS GetCallerIdentity: HTTP ${res.status} ${xml(res.body, 'Code') ?? ''}` };
    const arn = xml(res.body, 'Arn');
    const account = xml(res.body, 'Account');
    const userId = xml(res.body, 'UserId');
    if (arn === undefined) return { error: 'STS answered without an ARN' };
    const canonical = canonicalArn(arn);
    const m = mappings.find((x) => x.arn === canonical);
    if (!m) return { error: `ARN ${canonical} is not mapped` };
    const session = /assumed-role\/[^/]+\/(.+)$/.exec(arn)?.[1];
    return {
      user: {
        username: m.username,
        uid: `aws-iam-authenticator:${account ?? ''}:${userId ?? ''}`,
        groups: m.groups,
        extra: {
          arn: [arn],
          canonicalArn: [canonical],
          ...(session !== undefined ? { sessionName: [session] } : {}),
          ...(userId !== undefined ? { principalId: [userId] } : {}),
        },
      },
    };
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      if (body.length < 256 * 1024) body += c;
    });
    req.on('end', () => {
      void (async () => {
        let tr: { apiVersion?: string; spec?: { token?: string } } = {};
        try {
          tr = JSON.parse(body) as typeof tr;
        } catch {
          // answered as unauthenticated below
        }
        const r = await review(tr.spec?.token ?? '').catch((err: unknown) => ({
          error: (err as Error).message,
        }));
        const user = 'user' in r ? r.user : undefined;
        seen({
          authenticated: user !== undefined,
          ...(user !== undefined
            ? { username: user['username'] as string, arn: (user['extra'] as { arn: string[] }).arn[0] }
            : {}),
          ...('error' in r && r.error !== undefined ? { error: r.error } : {}),
        });
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            apiVersion: tr.apiVersion ?? 'authentication.k8s.io/v1',
            kind: 'TokenReview',
            status:
              user !== undefined
                ? { authenticated: true, user }
                : { authenticated: false, error: 'error' in r ? r.error : 'unauthenticated' },
          }),
        );
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const webhookConfig = join(dir, 'eks-authn-webhook.kubeconfig');
  writeFileSync(
    webhookConfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: 'aws-iam-authenticator', cluster: { server: `http://127.0.0.1:${port}/authenticate` } },
      ],
      users: [{ name: 'apiserver', user: {} }],
      contexts: [{ name: 'webhook', context: { cluster: 'aws-iam-authenticator', user: 'apiserver' } }],
      'current-context': 'webhook',
    }),
  );
  return {
    webhookConfig,
    apiserverArgs: [
      `--authentication-token-webhook-config-file=${webhookConfig}`,
      '--authentication-token-webhook-version=v1',
      // Every token is checked again (a renewed token is seen by the authenticator at once).
      '--authentication-token-webhook-cache-ttl=1s',
    ],
    setSts: (p) => {
      stsPort = p;
    },
    setMappings: (m) => {
      mappings = m;
    },
    reviews,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
      if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PodIdentityAgent {
  /** AWS_CONTAINER_CREDENTIALS_FULL_URI */
  uri: string;
  /** AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE */
  tokenFile: string;
  /** credentials handed out so far */
  served: () => number;
  stop: () => Promise<void>;
}

/** The Pod Identity agent's credentials endpoint, vending a role assumed in the emulator. */
export async function startPodIdentityAgent(opts: {
  stsPort: number;
  roleArn: string;
  /** the access key of the identity that assumes the role (the agent's own, in EKS) */
  agentAccessKeyId: string;
  dir: string;
}): Promise<PodIdentityAgent> {
  const token = `pod-identity-${Math.random().toString(36).slice(2)}`;
  const tokenFile = join(opts.dir, 'eks-pod-identity-token');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  let served = 0;
  const server = createServer((req, res) => {
    void (async () => {
      if (req.headers.authorization !== readFileSync(tokenFile, 'utf8').trim()) {
        res.statusCode = 401;
        res.end(JSON.stringify({ message: 'the authorization token is missing or wrong' }));
        return;
      }
      const day = new Date().toISOString().slice(0, 10).replace(/-/g, '');
      const r = await stsRequest(opts.stsPort, {
        method: 'POST',
        path: '/',
        headers: {
          host: 'sts.us-east-1.amazonaws.com',
          'content-type': 'application/x-www-form-urlencoded',
          // moto reads the caller from the credential scope; it verifies no signature here
          authorization: `AWS4-HMAC-SHA256 Credential=${opts.agentAccessKeyId}/${day}/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0`,
        },
        body: new URLSearchParams({
          Action: 'AssumeRole',
          Version: '2011-06-15',
          RoleArn: opts.roleArn,
          RoleSessionName: `eks-pod-identity-${served + 1}`,
          DurationSeconds: '900',
        }).toString(),
      });
      const id = xml(r.body, 'AccessKeyId');
      if (r.status !== 200 || id === undefined) {
        res.statusCode = 500;
        res.end(JSON.stringify({ message: `AssumeRole failed: HTTP ${r.status}` }));
        return;
      }
      served++;
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          AccessKeyId: id,
          SecretAccessKey: xml(r.body, 'SecretAccessKey'),
          Token: xml(r.body, 'SessionToken'),
          Expiration: xml(r.body, 'Expiration'),
        }),
      );
    })().catch((err: unknown) => {
      res.statusCode = 500;
      res.end(JSON.stringify({ message: (err as Error).message }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    uri: `http://127.0.0.1:${port}/v1/credentials`,
    tokenFile,
    served: () => served,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
    },
  };
}
