import 'reflect-metadata';

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { EksGateway } from '@periscope/cluster-ops';
import { Metrics } from '@periscope/observability';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';

import { ClusterRegistry } from '../../apps/server/src/clusters/cluster-registry.service';
import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import {
  startEksAuthenticator,
  startLocalAws,
  startPodIdentityAgent,
  type EksAuthenticator,
  type LocalAws,
} from '../k8s/aws/local-aws';
import { devLogin } from '../support/dev-login';
import { hasPrompt, launchBrowser, newPage, signIn, typeLine, waitPill, waitTerminal } from '../web/browser';
import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';
import { startShellCluster, templateRbacOnly, waitForShellPolicy } from './shell-cluster';

/**
 * The eks backend end to end on a local AWS emulation (e2e/k8s/aws): the server finds the
 * cluster by EKS DescribeCluster (AWS SDK, against moto), signs `k8s-aws-v1.` tokens with the
 * SDK's SigV4 presigner, and the local kube-apiserver authenticates them through a webhook that
 * does what EKS does (STS GetCallerIdentity with the presigned request; moto's STS here verifies
 * the signature) and maps the ARN to a Kubernetes user. The server's identity gets the shell RBAC
 * by the documented install step (periscope-agent chart, mode=rbac-only, for that user). Each
 * credential path of the SDK's chain runs a real cluster-shell session: static keys, IRSA (web
 * identity token file + AssumeRoleWithWebIdentity), Pod Identity (container credentials).
 */
const NS = 'periscope-shell';
const REGION = 'eu-west-1';
const ACCOUNT = '123456789012';
const EKS_USER = 'eks:periscope-server';
const APPS = 'eks-apps';
const arnOf = (name: string, region = REGION): string => `arn:aws:eks:${region}:${ACCOUNT}:cluster/${name}`;

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) =>
    srv.close(() => {
      resolve();
    }),
  );
  return port;
}

interface Running {
  app: NestExpressApplication;
  base: string;
  cookie: string;
  stop: () => Promise<void>;
}

describe('the eks backend on a local AWS emulation', () => {
  let env: Awaited<ReturnType<typeof startShellCluster>>;
  let auth: EksAuthenticator;
  let aws: LocalAws;
  let dir: string;
  const savedEnv = { ...process.env };
  /** what beforeAll started, stopped in reverse order */
  const cleanup: (() => Promise<void>)[] = [];

  /** A server whose AWS identity comes from `awsEnv` through the SDK's default chain. */
  async function startServer(awsEnv: Record<string, string>, clusters: string): Promise<Running> {
    for (const k of Object.keys(process.env))
      if (k.startsWith('AWS_')) Reflect.deleteProperty(process.env, k);
    Object.assign(process.env, {
      AWS_REGION: REGION,
      AWS_ENDPOINT_URL_EKS: aws.endpoint,
      AWS_ENDPOINT_URL_STS: aws.endpoint,
      // Never the instance metadata address (only 127.0.0.0/8 is a target), no shared files.
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONFIG_FILE: join(dir, 'no-aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-aws-credentials'),
      ...awsEnv,
    });
    const sdir = mkdtempSync(join(dir, 'server-'));
    // The public URL is the one the browser uses (the WebSocket origin check).
    const port = await closedPort();
    writeFileSync(
      join(sdir, 'auth.yaml'),
      'authorization:\n  mode: tier\n  groupTiers: { admins: admin }\ndev:\n  users:\n    - { subject: alice@example.com, groups: [admins] }\n',
    );
    writeFileSync(join(sdir, 'clusters.yaml'), `clusters:\n${clusters}`);
    const app = await createServerApp(
      loadServerConfig(
        {
          PERISCOPE_AUTH_MODE: 'dev',
          PERISCOPE_AUTH_FILE: join(sdir, 'auth.yaml'),
          PERISCOPE_CLUSTERS_FILE: join(sdir, 'clusters.yaml'),
          PERISCOPE_DATA_DIR: join(sdir, 'data'),
          PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
          PERISCOPE_CLUSTER_SHELL_NAMESPACE: NS,
          PERISCOPE_CLUSTER_SHELL_IMAGE: env.image,
          PERISCOPE_PUBLIC_URL: `http://127.0.0.1:${port}`,
          PERISCOPE_LOG_LEVEL: 'warn',
        },
        (p) => readFileSync(p, 'utf8'),
      ),
    );
    await app.listen(port, '127.0.0.1');
    const base = `http://127.0.0.1:${port}`;
    const cookie = await devLogin(base, 'alice@example.com');
    return { app, base, cookie, stop: () => app.close() };
  }

  const labEntry = `  - { name: lab, backend: eks, arn: ${arnOf('lab')}, region: ${REGION} }\n`;

  interface ClusterJson {
    name: string;
    clusterShellEnabled: boolean;
    clusterShellReason?: string;
    connection: { state: string; reason?: string };
  }
  const clusters = async (s: Running): Promise<ClusterJson[]> => {
    const res = await fetch(`${s.base}/api/clusters`, { headers: { cookie: s.cookie } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { clusters: ClusterJson[] }).clusters;
  };

  /** Opens a cluster shell on lab, runs `kubectl auth whoami -o json`, and returns the session. */
  async function shellSession(
    s: Running,
    during?: (send: (line: string) => void, output: () => string) => Promise<void>,
  ): Promise<{ output: string }> {
    await until(
      'lab to offer the shell',
      async () => {
        await new Promise((r) => setTimeout(r, 200));
        const c = (await clusters(s)).find((x) => x.name === 'lab');
        return c?.clusterShellEnabled === true ? c : undefined;
      },
      60_000,
    );
    const res = await fetch(`${s.base}/api/clusters/lab/shell/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie: s.cookie, origin: s.base },
      body: '{}',
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { ticket } = (await res.json()) as { ticket: string };
    const ws = new WebSocket(`${s.base.replace('http', 'ws')}/api/clusters/lab/shell?ticket=${ticket}`, {
      headers: { cookie: s.cookie, origin: s.base },
    });
    const frames: Record<string, unknown>[] = [];
    let output = '';
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) output = (output + data.toString()).slice(-256 * 1024);
      else frames.push(JSON.parse(data.toString()) as Record<string, unknown>);
    });
    const closed = new Promise<void>((resolve) =>
      ws.once('close', () => {
        resolve();
      }),
    );
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const send = (line: string): void => {
      ws.send(Buffer.from(line));
    };
    await until('the prompt', () => output.length > 0, 90_000);
    send('kubectl auth whoami -o json; echo WHOAMI-DONE\n');
    // the typed line echoes once, the command prints the marker after the JSON
    await until(
      'whoami',
      () => output.includes('"username"') && output.split('WHOAMI-DONE').length > 2,
      30_000,
    );
    if (during) await during(send, () => output);
    send('exit 0\n');
    await until('the session to end', () => closed.then(() => true), 30_000);
    expect(frames.filter((f) => f['type'] === 'error')).toEqual([]);
    expect(frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });
    return { output };
  }

  /**
   * The operator, the tier group and the session extras in whoami; the session pod created by the
   * EKS-mapped identity of the server (with the ARN of the credential path) in the audit log.
   */
  async function expectEksSession(output: string, arnPattern: RegExp): Promise<void> {
    expect(output).toContain('"username": "alice@example.com"');
    expect(output).toContain('periscope-tier:admin');
    expect(output).toContain('audit.periscope.io/session-id');
    const event = await until(
      'an apiserver audit event of the EKS identity creating the session pod',
      () =>
        env.cluster
          .auditEvents()
          .find(
            (e) =>
              e.user.username === EKS_USER &&
              e.verb === 'create' &&
              e.objectRef?.resource === 'pods' &&
              e.objectRef.namespace === NS &&
              arnPattern.test(e.user.extra?.['arn']?.[0] ?? ''),
          ),
      30_000,
    );
    expect(event.user.groups).toContain('periscope:servers');
    // Teardown removed the session's objects (its ServiceAccount: the shell token is revoked).
    await until(
      'the session objects to be gone',
      async () => {
        const r = await env.cluster.kubectlOk([
          '-n',
          NS,
          'get',
          'pods,secrets,serviceaccounts',
          '-o',
          'name',
        ]);
        return !/periscope-shell-/.test(r);
      },
      60_000,
    );
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'periscope-eks-'));
    const d = dir;
    cleanup.push(() => {
      rmSync(d, { recursive: true, force: true });
      return Promise.resolve();
    });
    auth = await startEksAuthenticator({ clusterId: 'lab', dir });
    cleanup.push(auth.stop);
    env = await startShellCluster(inject('cluster').binDir, { apiserverArgs: auth.apiserverArgs });
    cleanup.push(env.stop);
    aws = await startLocalAws({
      account: ACCOUNT,
      clusters: [
        { name: 'lab', region: REGION, endpoint: env.cluster.url, caPem: env.cluster.info.caPem },
        {
          name: 'private-lab',
          region: REGION,
          endpoint: `https://127.0.0.1:${await closedPort()}`,
          caPem: env.cluster.info.caPem,
          publicAccess: false,
        },
      ],
      users: ['periscope-server', 'pod-identity-agent', 'denied', 'stale'],
      roles: ['periscope-irsa', 'periscope-pod-identity'],
      deny: ['denied'],
      expired: ['stale'],
    });
    cleanup.push(aws.stop);
    auth.setSts(aws.port);
    const server = aws.users['periscope-server'];
    if (!server) throw new Error('the emulator made no periscope-server user');
    // The access-entry-like mapping: each of the server's AWS identities is one Kubernetes user.
    auth.setMappings(
      [server.arn, aws.roles['periscope-irsa'] ?? '', aws.roles['periscope-pod-identity'] ?? ''].map(
        (arn) => ({
          arn,
          username: EKS_USER,
          groups: ['periscope:servers'],
        }),
      ),
    );
    // The documented install step for a direct cluster's identity (docs/cluster-shell.md).
    const r = templateRbacOnly(EKS_USER, NS);
    expect(r.ok, r.stderr).toBe(true);
    await env.cluster.kubectlOk(['apply', '-f', '-'], { input: r.stdout });
    // The policy probe as the EKS identity itself: a token the SDK signs, the webhook maps.
    const { eksToken } = await import('@periscope/cluster-ops');
    const token = await eksToken({
      cluster: 'lab',
      region: REGION,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    });
    await waitForShellPolicy(env.cluster, NS, env.cluster.kubeconfig('eks-server', { token }));
  });

  afterAll(async () => {
    for (const k of Object.keys(process.env)) if (!(k in savedEnv)) Reflect.deleteProperty(process.env, k);
    Object.assign(process.env, savedEnv);
    for (const stop of cleanup.reverse()) await stop();
  });

  it('static keys: a cluster shell whose whoami is the operator, audited as the EKS-mapped server; a forced token renewal leaves the session working', async () => {
    const key = aws.users['periscope-server'];
    const s = await startServer(
      { AWS_ACCESS_KEY_ID: key?.accessKeyId ?? '', AWS_SECRET_ACCESS_KEY: key?.secretAccessKey ?? '' },
      labEntry,
    );
    try {
      const gw = s.app.get(ClusterRegistry).gateway('lab');
      expect(gw).toBeInstanceOf(EksGateway);
      const eks = gw as EksGateway;
      const { output } = await shellSession(s, async (send, out) => {
        const before = (await eks.kubeConfig()).getCurrentUser().token;
        const reviewed = auth.reviews.length;
        // Tokens are signed to the second: let one pass so the renewed token differs.
        await new Promise((r) => setTimeout(r, 1100));
        expect(await eks.renewToken()).toEqual({ ok: true, forced: true });
        const after = (await eks.kubeConfig()).getCurrentUser().token;
        expect(after).toMatch(/^k8s-aws-v1\./);
        expect(after).not.toBe(before);
        // The open session is unaffected; the server's next call uses the new token.
        send('echo STILL-$((40+2))\n');
        await until('the session to answer after the renewal', () => out().includes('STILL-42'), 20_000);
        expect((await eks.listPods({ namespace: NS, limit: 10 })).length).toBeGreaterThan(0);
        expect(auth.reviews.slice(reviewed).some((r) => r.authenticated && r.arn === key?.arn)).toBe(true);
      });
      await expectEksSession(output, /:user\/periscope-server$/);

      // A pod exec through the same entry: the server impersonates the operator as its EKS identity.
      await env.cluster.kubectlOk(['create', 'namespace', APPS]);
      await env.cluster.kubectlOk([
        '-n',
        APPS,
        'run',
        'app',
        `--image=${env.image}`,
        '--restart=Never',
        '--command',
        '--',
        'sleep',
        '3600',
      ]);
      await env.cluster.kubectlOk(['-n', APPS, 'wait', '--for=condition=Ready', 'pod/app', '--timeout=60s']);
      const res = await fetch(`${s.base}/api/clusters/lab/pods/${APPS}/app/exec/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie: s.cookie, origin: s.base },
        body: JSON.stringify({ container: 'app' }),
      });
      expect(res.status, await res.clone().text()).toBe(201);
      const { socketPath } = (await res.json()) as { socketPath: string };
      const client = new TerminalClient(`${s.base.replace('http', 'ws')}${socketPath}`, {
        cookie: s.cookie,
        origin: s.base,
      });
      await client.opened;
      client.type('echo "in-pod-$((6*7))"\n');
      await client.waitText('the command output', /in-pod-42/);
      client.type('exit\n');
      await client.closed;
      const exec = await until(
        'the apiserver audit event of the exec, impersonated by the EKS identity',
        () =>
          env.cluster
            .auditEvents()
            .find(
              (e) =>
                e.objectRef?.subresource === 'exec' &&
                e.objectRef.namespace === APPS &&
                e.user.username === EKS_USER &&
                e.impersonatedUser?.username === 'alice@example.com',
            ),
        30_000,
      );
      expect(exec.user.extra?.['arn']).toEqual([key?.arn]);
      expect(exec.impersonatedUser?.groups).toContain('periscope-tier:admin');
      const metric = await s.app
        .get(Metrics)
        .registry.getSingleMetricAsString('periscope_eks_token_renewals_total');
      expect(metric).toMatch(/periscope_eks_token_renewals_total\{cluster="lab",outcome="ok"\} [1-9]/);
      // No token in the authenticator's record, nor a failure.
      expect(JSON.stringify(auth.reviews)).not.toContain('k8s-aws-v1.');
    } finally {
      await s.stop();
    }
  });

  it('Chromium: a person opens a cluster shell on the eks cluster from the web UI', async () => {
    if (!existsSync(join(__dirname, '../../apps/web/dist/index.html')))
      throw new Error('the web UI is not built: run npm run build (apps/web/dist) before this test');
    const key = aws.users['periscope-server'];
    const s = await startServer(
      { AWS_ACCESS_KEY_ID: key?.accessKeyId ?? '', AWS_SECRET_ACCESS_KEY: key?.secretAccessKey ?? '' },
      `${labEntry}  - { name: ghost, backend: eks, arn: ${arnOf('ghost')}, region: ${REGION} }\n`,
    );
    const browser = await launchBrowser();
    try {
      const page = await newPage(browser);
      await signIn(page, s.base, 'alice@example.com');
      await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Fleet' }).click();
      // An eks cluster that cannot be used says why, in the fleet table.
      await page
        .getByRole('table', { name: 'clusters' })
        .getByRole('row')
        .filter({ hasText: 'ghost' })
        .getByText(/unavailable: No EKS cluster named "ghost" in eu-west-1/)
        .waitFor({ timeout: 45_000 });
      await page
        .getByRole('table', { name: 'clusters' })
        .getByRole('link', { name: 'lab', exact: true })
        .click();
      await page.getByRole('heading', { level: 1, name: 'lab' }).waitFor();
      await page.getByRole('button', { name: 'Shell', exact: true }).click();
      await page.getByRole('tab', { name: /lab\s*shell/ }).waitFor();
      await waitTerminal(page, 'the prompt', hasPrompt, 90_000);
      await typeLine(page, 'kubectl auth whoami');
      const text = await waitTerminal(
        page,
        'the whoami answer',
        (t) => /Username\s+alice@example\.com/.test(t) && /audit\.periscope\.io\/session-id/.test(t),
        60_000,
      );
      expect(text).toMatch(/Groups\s+\[.*periscope-tier:admin/);
      const sid = /audit\.periscope\.io\/session-id\s+\[([0-9a-f-]{36})\]/.exec(text)?.[1];
      expect(sid).toBeDefined();
      // The server created this session's pod as its EKS-mapped identity.
      await until(
        'the audit event of the session pod, created by the EKS identity',
        () =>
          env.cluster
            .auditEvents()
            .find(
              (e) =>
                e.user.username === EKS_USER &&
                e.verb === 'create' &&
                e.objectRef?.resource === 'pods' &&
                e.objectRef.name === `periscope-shell-${sid ?? ''}`,
            ),
        30_000,
      );
      await typeLine(page, 'exit');
      await waitPill(page, /^closed · exit 0$/, 60_000);
      await until(
        'the session objects to be gone',
        async () =>
          !(
            await env.cluster.kubectlOk(['-n', NS, 'get', 'pods,secrets,serviceaccounts', '-o', 'name'])
          ).includes(sid ?? '-'),
        60_000,
      );
    } finally {
      await browser.close();
      await s.stop();
    }
  });

  it('IRSA: a web identity token file and AssumeRoleWithWebIdentity provision a shell as the role', async () => {
    // A projected-style ServiceAccount token of the local apiserver, audience sts.amazonaws.com.
    const jwt = (
      await env.cluster.kubectlOk([
        '-n',
        'default',
        'create',
        'token',
        'default',
        '--audience=sts.amazonaws.com',
      ])
    ).trim();
    const tokenFile = join(dir, 'irsa-token');
    writeFileSync(tokenFile, jwt, { mode: 0o600 });
    const s = await startServer(
      {
        AWS_ROLE_ARN: aws.roles['periscope-irsa'] ?? '',
        AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
        AWS_ROLE_SESSION_NAME: 'periscope-irsa-session',
      },
      labEntry,
    );
    try {
      const { output } = await shellSession(s);
      await expectEksSession(output, /:assumed-role\/periscope-irsa\/periscope-irsa-session$/);
    } finally {
      await s.stop();
    }
  });

  it('Pod Identity: the container-credentials endpoint provisions a shell as the role', async () => {
    const agent = await startPodIdentityAgent({
      stsPort: aws.port,
      roleArn: aws.roles['periscope-pod-identity'] ?? '',
      agentAccessKeyId: aws.users['pod-identity-agent']?.accessKeyId ?? '',
      dir,
    });
    const s = await startServer(
      {
        AWS_CONTAINER_CREDENTIALS_FULL_URI: agent.uri,
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: agent.tokenFile,
      },
      labEntry,
    );
    try {
      const { output } = await shellSession(s);
      await expectEksSession(output, /:assumed-role\/periscope-pod-identity\/eks-pod-identity-\d+$/);
      expect(agent.served()).toBeGreaterThan(0);
    } finally {
      await s.stop();
      await agent.stop();
    }
  });

  it('says what to do in /api/clusters: unknown cluster, region mismatch, private endpoint, AccessDenied, expired credentials', async () => {
    const unavailable = async (s: Running, name: string): Promise<string> => {
      const c = await until(
        `${name} to be unavailable with a reason`,
        async () => {
          await new Promise((r) => setTimeout(r, 250));
          const v = (await clusters(s)).find((x) => x.name === name);
          return v?.connection.state === 'unavailable' ? v : undefined;
        },
        45_000,
      );
      return c.connection.reason ?? '';
    };
    const key = aws.users['periscope-server'];
    const s = await startServer(
      { AWS_ACCESS_KEY_ID: key?.accessKeyId ?? '', AWS_SECRET_ACCESS_KEY: key?.secretAccessKey ?? '' },
      [
        `  - { name: ghost, backend: eks, arn: ${arnOf('ghost')}, region: ${REGION} }`,
        `  - { name: crossed, backend: eks, arn: ${arnOf('lab')}, region: us-east-1 }`,
        `  - { name: private, backend: eks, arn: ${arnOf('private-lab')}, region: ${REGION} }`,
      ].join('\n') + '\n',
    );
    try {
      expect(await unavailable(s, 'ghost')).toMatch(
        /^No EKS cluster named "ghost" in eu-west-1 .*Check the cluster name/,
      );
      expect(await unavailable(s, 'crossed')).toMatch(
        /^Region mismatch .*the ARN names eu-west-1 but the clusters file says region us-east-1\. Set region: eu-west-1/,
      );
      expect(await unavailable(s, 'private')).toMatch(
        /is private \(endpointPublicAccess false\) and unreachable from the server.*use the agent backend/,
      );
    } finally {
      await s.stop();
    }
    for (const [user, pattern] of [
      [
        'denied',
        /^AWS refused DescribeCluster on lab in eu-west-1 \(AccessDeniedException.*Give the server's AWS identity eks:DescribeCluster/,
      ],
      ['stale', /credentials have expired.*Renew them/],
    ] as const) {
      const k = aws.users[user];
      const t = await startServer(
        { AWS_ACCESS_KEY_ID: k?.accessKeyId ?? '', AWS_SECRET_ACCESS_KEY: k?.secretAccessKey ?? '' },
        labEntry,
      );
      try {
        expect(await unavailable(t, 'lab')).toMatch(pattern);
      } finally {
        await t.stop();
      }
    }
  });
});
