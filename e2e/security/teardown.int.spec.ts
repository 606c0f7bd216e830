import 'reflect-metadata';

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, request, type Server as HttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as k8s from '@kubernetes/client-node';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { parse } from 'yaml';

import type { AgentApp } from '../../apps/agent/src/agent-app';
import { AuditStore, type StoredAuditEvent } from '../../apps/server/src/audit/audit-store';
import { ShellAdmission } from '../../apps/server/src/cluster-shell/shell-admission.service';
import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import { SHELL_NS, startShellCluster } from '../cluster-ops/shell-cluster';
import { freePort } from '../k8s/ports';
import { devLogin } from '../support/dev-login';
import { mintAgentToken, startTestAgent } from '../support/test-agent';
import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';

/*
 * Teardown that cannot be stopped from inside the shell (issue 16, points 3 and 4): whatever the
 * operator does to the in-pod command log (a FIFO, a symlink to the session kubeconfig, a 1 GiB
 * file), whatever happens to the pod (killed before teardown), and however early the session is
 * closed (within 20 ms of opening, while the pod is still being provisioned), every session ends
 * with no Pod, no Secret, its token rejected by the apiserver, its cap slot free and exactly one
 * close record — on a direct (kubeconfig) cluster and on an agent cluster (server ⇄ real
 * Socket.IO tunnel ⇄ agent, both the real apps). The operator's tricks are typed into the real
 * shell, as a person would. The reaper is kept out of the way (10 min grace), so nothing here is
 * cleaned up by it.
 */

const ORIGIN = 'http://localhost:8080';
/** Operator and a second admin (the one who ends other people's sessions). */
const OPERATOR = 'alice@example.com';
const ADMIN = 'root@example.com';
/** From the trigger (exit, close, DELETE) to the close record: every step's deadline is below it. */
const ENDS_WITHIN_MS = 20_000;
/** An admin's DELETE /api/sessions/:id answers within this (the server waits at most 10 s). */
const DELETE_ANSWERS_WITHIN_MS = 12_000;

const AUDIT_FILE = '/tmp/periscope-shell/audit.jsonl';

let env: Awaited<ReturnType<typeof startShellCluster>>;
let server: NestExpressApplication;
let agent: AgentApp | undefined;
let base: string;
const cookies: Record<string, string> = {};
const savedKubeconfig = process.env['KUBECONFIG'];
let adminKc: k8s.KubeConfig;

beforeAll(async () => {
  env = await startShellCluster(inject('cluster').binDir);
  const dir = mkdtempSync(join(tmpdir(), 'periscope-teardown-'));
  // Server (direct cluster `lab`) and agent (cluster `edge`) both act as the namespace-scoped
  // provisioner, as an in-cluster server and an agent do.
  const provisioner = join(dir, 'provisioner.kubeconfig');
  writeFileSync(provisioner, env.provisionerKc.exportConfig());
  writeFileSync(
    join(dir, 'auth.yaml'),
    [
      'authorization:',
      '  mode: tier',
      '  groupTiers: { admins: admin }',
      'dev:',
      '  users:',
      `    - { subject: ${OPERATOR}, groups: [admins] }`,
      `    - { subject: ${ADMIN}, groups: [admins] }`,
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'clusters.yaml'),
    [
      'clusters:',
      `  - { name: lab, backend: kubeconfig, kubeconfigPath: ${provisioner} }`,
      '  - { name: edge, backend: agent }',
    ].join('\n'),
  );
  const tunnelPort = await freePort();
  server = await createServerApp(
    loadServerConfig(
      {
        PERISCOPE_AUTH_MODE: 'dev',
        PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
        PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
        PERISCOPE_DATA_DIR: join(dir, 'data'),
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_CLUSTER_SHELL_NAMESPACE: SHELL_NS,
        PERISCOPE_CLUSTER_SHELL_IMAGE: env.image,
        PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '8',
        PERISCOPE_AGENT_TUNNEL_PORT: String(tunnelPort),
        PERISCOPE_AGENT_TUNNEL_URL: `https://127.0.0.1:${tunnelPort}`,
        // Not the reaper's doing: nothing younger than 10 minutes is reaped in this file.
        PERISCOPE_REAPER_GRACE_SECONDS: '600',
        PERISCOPE_PUBLIC_URL: ORIGIN,
        PERISCOPE_LOG_LEVEL: 'warn',
      },
      (p) => readFileSync(p, 'utf8'),
    ),
  );
  await server.listen(0, '127.0.0.1');
  base = await server.getUrl();
  for (const u of [OPERATOR, ADMIN]) cookies[u] = await devLogin(base, u);

  const token = await mintAgentToken(base, { cookie: cookies[ADMIN] ?? '' }, 'edge');
  process.env['KUBECONFIG'] = provisioner; // the agent loads its kubeconfig the default way
  agent = await startTestAgent({
    serverUrl: `https://127.0.0.1:${tunnelPort}`,
    registrationUrl: base,
    cluster: 'edge',
    token,
    namespace: SHELL_NS,
  });
  await until(
    'the cluster shell on the agent cluster',
    async () => {
      const res = await fetch(`${base}/api/clusters`, { headers: { cookie: cookies[ADMIN] ?? '' } });
      const { clusters } = (await res.json()) as {
        clusters: { name: string; clusterShellEnabled: boolean }[];
      };
      return clusters.find((c) => c.name === 'edge')?.clusterShellEnabled === true;
    },
    60_000,
  );
  adminKc = new k8s.KubeConfig();
  adminKc.loadFromFile(env.cluster.info.adminKubeconfig);
}, 240_000);

afterAll(async () => {
  // Bounded: a server whose teardown hangs must not keep the control plane running.
  const bounded = (p: Promise<unknown> | undefined): Promise<unknown> =>
    Promise.race([p, new Promise((r) => setTimeout(r, 30_000))]);
  try {
    await bounded(agent?.close());
    await bounded(server.close());
  } finally {
    if (savedKubeconfig === undefined) delete process.env['KUBECONFIG'];
    else process.env['KUBECONFIG'] = savedKubeconfig;
    await env.stop();
  }
}, 120_000);

const open: TerminalClient[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.ws.terminate();
});

const headers = (user: string): Record<string, string> => ({ cookie: cookies[user] ?? '', origin: ORIGIN });

interface Shell {
  sessionId: string;
  client: TerminalClient;
}

/** A ticket, then the socket, as the SPA does; does not wait for the shell. */
async function connect(cluster: string, user = OPERATOR): Promise<Shell & { socketPath: string }> {
  const res = await fetch(`${base}/api/clusters/${cluster}/shell/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers(user) },
    body: '{}',
  });
  const text = await res.text();
  expect(res.status, text).toBe(201);
  const { socketPath, sessionId } = JSON.parse(text) as { socketPath: string; sessionId: string };
  const client = new TerminalClient(`${base.replace('http', 'ws')}${socketPath}`, headers(user));
  open.push(client);
  return { sessionId, client, socketPath };
}

let tag = 0;
/** Types a command line and waits until the shell has run it (a marker the keystroke echo cannot match). */
async function typeAndWait(s: Shell, line: string, timeoutMs = 30_000): Promise<void> {
  const t = `done${++tag}`;
  s.client.type(`${line}; echo ${t}-$((40+2))\n`);
  await s.client.waitText(`"${line}" to run`, new RegExp(`${t}-42`), timeoutMs);
}

/** An open shell that answered a command. */
async function openShell(cluster: string): Promise<Shell> {
  const s = await connect(cluster);
  await s.client.opened;
  await typeAndWait(s, 'echo ready', 90_000);
  return s;
}

/** The token in the session's kubeconfig (read as the cluster admin, while the session lives). */
async function sessionToken(sessionId: string): Promise<string> {
  const b64 = await env.cluster.kubectlOk([
    '-n',
    SHELL_NS,
    'get',
    'secret',
    `periscope-shell-${sessionId}`,
    '-o',
    'jsonpath={.data.kubeconfig}',
  ]);
  return tokenOf(Buffer.from(b64, 'base64').toString('utf8'));
}

function tokenOf(kubeconfig: string): string {
  const kc = parse(kubeconfig) as { users?: { user?: { token?: string } }[] };
  const token = kc.users?.[0]?.user?.token;
  if (token === undefined || token === '') throw new Error('no token in the session kubeconfig');
  return token;
}

/** The apiserver's HTTP status for a request made with `token`. */
function statusWithToken(token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${env.cluster.info.url}/api`,
      { ca: env.cluster.info.caPem, headers: { authorization: `Bearer ${token}` }, timeout: 10_000 },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * The apiserver rejects the token (401): at once after the Secret it is bound to is gone, or
 * within its token cache's 10 s.
 */
async function expectTokenDead(token: string): Promise<void> {
  let last = 0;
  await until(
    'the session token to be rejected',
    async () => {
      last = await statusWithToken(token);
      return last === 401;
    },
    15_000,
  ).catch(() => {
    throw new Error(`the session token still answers HTTP ${last} after teardown`);
  });
}

async function objectsOf(sessionId: string): Promise<string[]> {
  const out = await env.cluster.kubectlOk([
    '-n',
    SHELL_NS,
    'get',
    'pods,secrets',
    '-l',
    `periscope.io/session-id=${sessionId}`,
    '-o',
    'name',
  ]);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

function closesOf(sessionId: string): StoredAuditEvent[] {
  return server
    .get(AuditStore)
    .bySession(sessionId)
    .filter((e) => e.verb === 'cluster_shell_close');
}

async function liveSessionIds(): Promise<string[]> {
  const res = await fetch(`${base}/api/sessions`, { headers: headers(ADMIN) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { sessions: { sessionId: string }[] }).sessions.map((s) => s.sessionId);
}

/**
 * What every case ends with: the close record within ENDS_WITHIN_MS of `since`, the session gone
 * from the sessions API, no Pod and no Secret, every token the session had rejected with 401,
 * its cap slot free, and exactly one close record (still one a moment later). Answers the close.
 */
async function expectTornDown(sessionId: string, tokens: string[], since: number): Promise<StoredAuditEvent> {
  try {
    await until(
      'the close record',
      () => closesOf(sessionId).length > 0,
      ENDS_WITHIN_MS - (Date.now() - since),
    );
  } catch {
    throw new Error(
      `session ${sessionId} has no cluster_shell_close ${ENDS_WITHIN_MS} ms after it was ended; live sessions: ${JSON.stringify(await liveSessionIds())}; objects: ${JSON.stringify(await objectsOf(sessionId))}`,
    );
  }
  await until(
    'the session to leave the sessions API',
    async () => !(await liveSessionIds()).includes(sessionId),
    10_000,
  );
  let left: string[] = [];
  await until(
    'no Pod and no Secret of the session',
    async () => {
      left = await objectsOf(sessionId);
      return left.length === 0;
    },
    30_000,
  ).catch(() => {
    throw new Error(`objects of session ${sessionId} left behind: ${left.join(', ')}`);
  });
  for (const token of tokens) await expectTokenDead(token);
  const caps = server.get(ShellAdmission).caps;
  expect(caps.has(sessionId), 'the cap slot of the session').toBe(false);
  await new Promise((r) => setTimeout(r, 500));
  const closes = closesOf(sessionId);
  expect(closes, 'close records of the session').toHaveLength(1);
  // Nothing the session read from the pod may carry its credential into the audit store.
  const all = JSON.stringify(server.get(AuditStore).bySession(sessionId));
  for (const token of tokens) expect(all.includes(token), 'the session token in the audit store').toBe(false);
  return closes[0] as StoredAuditEvent;
}

/**
 * Makes the apiserver slow to create session Secrets (a validating webhook that answers after
 * `delayMs`), so a close right after the open lands while the provision is still at its first
 * step, every time. Served with the local node's certificate (127.0.0.1, signed by the cluster CA).
 */
async function slowSecretCreation(delayMs: number): Promise<{ stop: () => Promise<void> }> {
  const pki = env.cluster.pki;
  const hook: HttpsServer = createHttpsServer(
    { cert: readFileSync(pki.nodeCert), key: readFileSync(pki.nodeKey) },
    (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const uid = (JSON.parse(body) as { request?: { uid?: string } }).request?.uid ?? '';
        setTimeout(() => {
          res.setHeader('content-type', 'application/json');
          res.end(
            JSON.stringify({
              apiVersion: 'admission.k8s.io/v1',
              kind: 'AdmissionReview',
              response: { uid, allowed: true },
            }),
          );
        }, delayMs);
      });
    },
  );
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const port = (hook.address() as { port: number }).port;
  const name = `teardown-slow-secrets-${port}`;
  await env.cluster.apply(
    JSON.stringify({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name },
      webhooks: [
        {
          name: 'slow-secrets.teardown.periscope.test',
          clientConfig: {
            url: `https://127.0.0.1:${port}/`,
            caBundle: Buffer.from(env.cluster.info.caPem).toString('base64'),
          },
          rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['secrets'] }],
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': SHELL_NS } },
          objectSelector: { matchExpressions: [{ key: 'periscope.io/session-id', operator: 'Exists' }] },
          sideEffects: 'None',
          admissionReviewVersions: ['v1'],
          failurePolicy: 'Fail',
          timeoutSeconds: 15,
        },
      ],
    }),
  );
  return {
    stop: async () => {
      await env.cluster.kubectl(['delete', 'validatingwebhookconfiguration', name, '--ignore-not-found']);
      await new Promise<void>((r) => {
        hook.close(() => {
          r();
        });
      });
    },
  };
}

describe.each([
  ['a direct (kubeconfig) cluster', 'lab'],
  ['an agent cluster', 'edge'],
] as const)('teardown on %s', (_label, cluster) => {
  it('the audit file replaced with a FIFO, then exit: torn down at once, the close says the log was refused', async () => {
    const s = await openShell(cluster);
    const token = await sessionToken(s.sessionId);
    expect(await statusWithToken(token), 'the token works while the session lives').toBe(200);
    s.client.type(`rm -f ${AUDIT_FILE}; mkfifo ${AUDIT_FILE}; exit\n`);
    const since = Date.now();
    await until('the closed frame', () => s.client.frame('closed'), 30_000);
    const close = await expectTornDown(s.sessionId, [token], since);
    expect(close.body).toMatchObject({ close_reason: 'exit', exit_code: 0 });
    expect(String(close.body['commands_unavailable'])).toMatch(/FIFO/);
  });

  it('an admin ends a session whose audit file is a FIFO: DELETE answers promptly, then everything is gone', async () => {
    const s = await openShell(cluster);
    const token = await sessionToken(s.sessionId);
    await typeAndWait(s, `rm -f ${AUDIT_FILE}; mkfifo ${AUDIT_FILE}`);
    const started = Date.now();
    const res = await fetch(`${base}/api/sessions/${s.sessionId}`, {
      method: 'DELETE',
      headers: headers(ADMIN),
      signal: AbortSignal.timeout(60_000),
    });
    const took = Date.now() - started;
    expect(res.status).toBe(204);
    expect(took, 'DELETE /api/sessions/:id answered after (ms)').toBeLessThan(DELETE_ANSWERS_WITHIN_MS);
    const close = await expectTornDown(s.sessionId, [token], started);
    expect(close.body).toMatchObject({ close_reason: 'ended_by_admin' });
    expect(s.client.frame('closed')).toMatchObject({ reason: 'ended_by_admin' });
  });

  it('the audit file replaced with a symlink to the session kubeconfig: refused, the token never reaches the audit', async () => {
    const s = await openShell(cluster);
    const token = await sessionToken(s.sessionId);
    // A real command first, so there is a log to tamper with.
    await typeAndWait(s, 'kubectl auth whoami >/dev/null');
    s.client.type(`rm -f ${AUDIT_FILE}; ln -s /etc/periscope/kubeconfig ${AUDIT_FILE}; exit\n`);
    const since = Date.now();
    await until('the closed frame', () => s.client.frame('closed'), 30_000);
    const close = await expectTornDown(s.sessionId, [token], since);
    expect(String(close.body['commands_unavailable'])).toMatch(/symbolic link/);
  });

  it('the audit file replaced with a 1 GiB file: read up to the cap only, torn down at once', async () => {
    const s = await openShell(cluster);
    const token = await sessionToken(s.sessionId);
    s.client.type(`rm -f ${AUDIT_FILE}; truncate -s 1G ${AUDIT_FILE}; exit\n`);
    const since = Date.now();
    await until('the closed frame', () => s.client.frame('closed'), 30_000);
    const close = await expectTornDown(s.sessionId, [token], since);
    expect(close.body).toMatchObject({ close_reason: 'exit', commands: [] });
    expect(JSON.stringify(close.body).length, 'size of the close record').toBeLessThan(64 * 1024);
  });

  it('the node stops answering before teardown: DELETE answers, the read is given up at its deadline, the slot, Secret and token go; the Pod once the node is back', async () => {
    const s = await openShell(cluster);
    const token = await sessionToken(s.sessionId);
    await typeAndWait(s, 'kubectl auth whoami >/dev/null');
    // The kubelet (the local node's process) freezes: the apiserver still answers, but the exec
    // of the in-pod read, like the shell's own stream, never hears back from the node.
    const nodePid = Number(readFileSync(join(env.cluster.info.stateDir, 'pids', 'node'), 'utf8'));
    process.kill(nodePid, 'SIGSTOP');
    try {
      const started = Date.now();
      const res = await fetch(`${base}/api/sessions/${s.sessionId}`, {
        method: 'DELETE',
        headers: headers(ADMIN),
        signal: AbortSignal.timeout(60_000),
      });
      expect(res.status).toBe(204);
      expect(Date.now() - started, 'DELETE /api/sessions/:id answered after (ms)').toBeLessThan(
        DELETE_ANSWERS_WITHIN_MS,
      );
      await until('the close record', () => closesOf(s.sessionId).length > 0, ENDS_WITHIN_MS);
      expect(String(closesOf(s.sessionId)[0]?.body['commands_unavailable'])).toMatch(
        /longer than|did not finish within/,
      );
      expect(server.get(ShellAdmission).caps.has(s.sessionId), 'the cap slot').toBe(false);
      // The Secret's deletion needs no node: the token is dead while the node is still frozen.
      await until(
        'the session Secret to be gone',
        async () =>
          (
            await env.cluster.kubectlOk([
              '-n',
              SHELL_NS,
              'get',
              'secrets',
              '-l',
              `periscope.io/session-id=${s.sessionId}`,
              '-o',
              'name',
            ])
          ).trim() === '',
        10_000,
      );
      await expectTokenDead(token);
    } finally {
      process.kill(nodePid, 'SIGCONT');
    }
    // The Pod object goes once the node confirms it stopped the containers.
    await expectTornDown(s.sessionId, [token], Date.now());
  });

  it("the pod's main process killed from inside before teardown: torn down, one close", async () => {
    const s = await openShell(cluster);
    const token = await sessionToken(s.sessionId);
    // The container's main process runs as the operator's uid too.
    s.client.type(
      "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q 'periscope-shell hold' && kill -9 ${p#/proc/}; done\n",
    );
    const since = Date.now();
    await until('the closed frame', () => s.client.frame('closed'), 60_000);
    const close = await expectTornDown(s.sessionId, [token], since);
    // The container was gone when teardown tried to read its log.
    expect(typeof close.body['commands_unavailable']).toBe('string');
  });

  it('closed within 20 ms of opening (still provisioning): the provision finishes or fails, then nothing is left', async () => {
    // Secret creation takes 2 s here: the close always comes before the session has any object.
    const slow = await slowSecretCreation(2000);
    onTestFinished(slow.stop);
    for (const delayMs of [0, 20]) {
      const s = await connect(cluster);
      // Every token the session ever had, seen as its Secret is written.
      const tokens = new Set<string>();
      const watch = await new k8s.Watch(adminKc).watch(
        `/api/v1/namespaces/${SHELL_NS}/secrets`,
        { labelSelector: `periscope.io/session-id=${s.sessionId}` },
        (_type: string, obj: k8s.V1Secret) => {
          const kc = obj.data?.['kubeconfig'];
          if (kc !== undefined) tokens.add(tokenOf(Buffer.from(kc, 'base64').toString('utf8')));
        },
        () => undefined,
      );
      try {
        await s.client.opened;
        await new Promise((r) => setTimeout(r, delayMs));
        s.client.control({ type: 'close' });
        const since = Date.now();
        await s.client.closed;
        // The provision takes longer than the close: its time counts toward the bound too.
        await expectTornDown(s.sessionId, [], since);
        await new Promise((r) => setTimeout(r, 6000)); // a late provision step would show by now
        expect(await objectsOf(s.sessionId)).toEqual([]);
        for (const token of tokens) await expectTokenDead(token);
        expect(s.client.frame('closed')).toMatchObject({ reason: 'client_close' });
      } finally {
        watch.abort();
      }
    }
  });

  it('a burst of concurrent opens and closes at every stage: every session ends, nothing is left', async () => {
    const shells = await Promise.all([0, 1, 2, 3, 4].map(() => connect(cluster)));
    await Promise.all(shells.map((s) => s.client.opened));
    const since = Date.now();
    // Closes spread over the provision and the first seconds of the shell.
    await Promise.all(
      shells.map(async (s, i) => {
        await new Promise((r) => setTimeout(r, i * 700));
        s.client.control({ type: 'close' });
        await s.client.closed;
      }),
    );
    for (const s of shells) await expectTornDown(s.sessionId, [], since + 5 * 700);
  });
});
