/**
 * In-cluster deployment check: both Helm charts installed with helm onto local control planes
 * whose node runs the server, agent and shell pods from the OCI image archives of `npm run images`
 * (this checkout's build; --strict-images: no pod runs host programs), then a cluster shell
 * through the helm-installed server and agent, checked to run the shell image's own files.
 *
 * Topology (everything on 127.0.0.1, the only network the process-backed node has):
 * - hub: a control plane running the `periscope` chart (release `periscope`, namespace
 *   `periscope`): clusters `edge` (agent) and `hub` (in-cluster), OpenID sign-in against a real
 *   provider in this process, agent CA in a Secret through the server's in-cluster identity;
 * - edge: a second control plane running the `periscope-agent` chart (namespace
 *   `periscope-agent`), registered with a token minted through the server's API, dialling the
 *   server's tunnel, acting on its cluster with its in-cluster ServiceAccount.
 *
 * Pods use the host network: the server listens on the chart's fixed HTTP port 8080 (which must
 * be free), the ports that are values (tunnel, agent health) are free ports. Services are
 * installed but not routable (no kube-proxy): clients dial the pods' ports on 127.0.0.1. See
 * docs/helm-charts.md.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ensureBinaries } from '../k8s/binaries';
import { startTestCluster, type TestCluster } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { readShellImageLayout, REPO_ROOT } from '../shell/image-layout';
import { sessionCookie, startIdp, type Idp } from '../support/oidc-idp';
import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';
import { buildImages, type BuiltImage, type ImageName } from '../images/build';

const SERVER_NS = 'periscope';
const AGENT_NS = 'periscope-agent';
const SHELL_NS = 'periscope-system';
const OPERATOR = 'ada';
const log = (line: string): void => {
  process.stderr.write(`[deploy] ${line}\n`);
};

interface ChartMeta {
  appVersion: string;
  repository: string;
}

function chartImage(chart: string, key: (values: Record<string, unknown>) => unknown): ChartMeta {
  const meta = parse(readFileSync(join(REPO_ROOT, 'charts', chart, 'Chart.yaml'), 'utf8')) as {
    appVersion: unknown;
  };
  const values = parse(readFileSync(join(REPO_ROOT, 'charts', chart, 'values.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  return { appVersion: String(meta.appVersion), repository: String(key(values)) };
}

function run(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code =
        err === null
          ? 0
          : typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * The chart fixes the server's HTTP port (8080; its probes use it too) and pods share the host
 * network, so the test needs 127.0.0.1:8080 free.
 */
async function chartHttpPortFree(): Promise<number> {
  const port = 8080;
  await new Promise<void>((resolve, reject) => {
    const srv = createServer();
    srv.once('error', (err) => {
      reject(
        new Error(
          `127.0.0.1:${port} is in use (${(err as NodeJS.ErrnoException).code ?? String(err)}): the periscope chart fixes the server's HTTP port and the local node runs pods on the host network; stop what listens there (npm start?)`,
        ),
      );
    });
    srv.listen(port, '127.0.0.1', () => {
      srv.close(() => {
        resolve();
      });
    });
  });
  return port;
}

/**
 * The local plane runs without the apiserver's endpoint reconciler, so the charts have no
 * default/kubernetes addresses to look up for the shell egress policy; its pods are processes on
 * loopback (and no CNI enforces the policy here).
 */
const LOCAL_EGRESS = { apiserver: { cidrs: ['127.0.0.1/32'] } };

describe('helm-installed server and agent on the local control plane', () => {
  const bins = ensureBinaries({ quiet: true });
  const work = mkdtempSync(join(tmpdir(), 'periscope-deploy-'));
  const helmHome = join(work, 'helm-home');
  let hub: TestCluster | undefined;
  let edge: TestCluster | undefined;
  let oidc: Idp | undefined;
  let publicURL = '';
  let httpPort = 0;
  let tunnelPort = 0;
  let healthPort = 0;
  let metricsPort = 0;
  const built = new Map<ImageName, BuiltImage>();
  let cookie = '';
  const installed: { cluster: TestCluster; release: string; ns: string }[] = [];

  const server = chartImage('periscope', (v) => (v['image'] as { repository: string }).repository);
  const agent = chartImage('periscope-agent', (v) => (v['image'] as { repository: string }).repository);
  const shell = chartImage(
    'periscope',
    (v) => (v['clusterShell'] as { image: { repository: string } }).image.repository,
  );

  async function helm(cluster: TestCluster, args: string[], timeoutMs = 420_000): Promise<string> {
    const r = await run(
      bins.helm,
      ['--kubeconfig', cluster.info.adminKubeconfig, ...args],
      {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: helmHome,
        HELM_CACHE_HOME: join(helmHome, 'cache'),
        HELM_CONFIG_HOME: join(helmHome, 'config'),
        HELM_DATA_HOME: join(helmHome, 'data'),
      },
      timeoutMs,
    );
    if (r.code !== 0) throw new Error(`helm ${args.join(' ')} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
    return r.stdout;
  }

  async function install(
    cluster: TestCluster,
    release: string,
    chart: string,
    ns: string,
    values: unknown,
  ): Promise<void> {
    const file = join(work, `${release}-values.json`);
    writeFileSync(file, JSON.stringify(values, null, 2));
    const started = Date.now();
    // --wait: the Deployment's ReplicaSet has its pod Ready (the node's workload controllers;
    // Ready = the chart's startup and readiness probes pass) and the Services have cluster IPs.
    await helm(cluster, [
      'install',
      release,
      join(REPO_ROOT, 'charts', chart),
      '--namespace',
      ns,
      '--values',
      file,
      '--wait',
      '--timeout',
      '6m',
    ]);
    installed.push({ cluster, release, ns });
    log(`helm install ${release}: ${Date.now() - started} ms`);
  }

  /** Pod, node and container logs of a namespace, for failure messages. */
  async function diagnose(cluster: TestCluster | undefined, ns: string): Promise<string> {
    if (cluster === undefined) return '';
    const pods = await cluster.kubectl(['-n', ns, 'get', 'pods,rs,deploy', '-o', 'wide']);
    const logs = await cluster.kubectl([
      '-n',
      ns,
      'logs',
      '-l',
      'app.kubernetes.io/instance',
      '--tail',
      '40',
      '--all-containers',
    ]);
    return `${pods.stdout}${pods.stderr}\n--- logs ---\n${logs.stdout}${logs.stderr}\n--- node ---\n${cluster.logTail('node', 40)}`;
  }

  /** helm --wait returned: the pod's readiness probe passed, so /readyz answers 200 now. */
  async function readyNow(url: string, why: () => Promise<string>): Promise<void> {
    const status = await fetch(url).then(
      (r) => r.status,
      (err: unknown) => String(err),
    );
    if (status !== 200) throw new Error(`${url} answered ${status} after helm --wait\n${await why()}`);
  }

  beforeAll(async () => {
    const started = Date.now();
    // ---- images: the OCI archives of `npm run images` (e2e/images/build.ts), built once per set
    // of inputs and cached under ~/.cache/periscope-images. The nodes run every pod from them;
    // any other image fails to pull (--strict-images), so nothing runs host programs. ----
    const layout = readShellImageLayout();
    expect(shell.repository).toBe(layout.image);
    for (const image of await buildImages({ log })) built.set(image.name, image);
    const archive = (name: ImageName): string => built.get(name)!.archive;
    log(`images ready after ${Date.now() - started} ms`);

    // ---- two control planes: hub runs the server, edge runs the agent (and shell pods) ----
    [hub, edge] = await Promise.all([
      startTestCluster({
        workloadControllers: true,
        probes: true,
        strictImages: true,
        imageArchives: {
          [server.repository]: archive('periscope-server'),
          [shell.repository]: archive('periscope-shell'),
        },
      }),
      startTestCluster({
        workloadControllers: true,
        probes: true,
        strictImages: true,
        imageArchives: {
          [agent.repository]: archive('periscope-agent'),
          [shell.repository]: archive('periscope-shell'),
        },
      }),
    ]);
    log(`control planes up after ${Date.now() - started} ms`);

    httpPort = await chartHttpPortFree();
    tunnelPort = await freePort();
    healthPort = await freePort();
    metricsPort = await freePort();
    publicURL = `http://127.0.0.1:${httpPort}`;
    oidc = await startIdp(publicURL, {
      [OPERATOR]: { email: 'ada@example.com', groups: ['platform-admins'] },
    });

    // ---- the server chart on hub ----
    await hub.kubectlOk(['create', 'namespace', SERVER_NS]);
    await hub.kubectlOk([
      '-n',
      SERVER_NS,
      'create',
      'secret',
      'generic',
      'periscope-oidc',
      `--from-literal=client-secret=${oidc.clientSecret}`,
    ]);
    try {
      await install(hub, 'periscope', 'periscope', SERVER_NS, {
        publicURL,
        logLevel: 'info',
        clusters: [
          { name: 'edge', backend: 'agent', environment: 'dev' },
          { name: 'hub', backend: 'in-cluster', environment: 'dev' },
        ],
        auth: {
          oidc: { issuer: oidc.issuer, clientID: oidc.clientId, providerName: 'Test IdP' },
          authorization: { mode: 'tier', groupTiers: { 'platform-admins': 'admin' } },
        },
        oidcClientSecret: { existingSecret: 'periscope-oidc', existingSecretKey: 'client-secret' },
        clusterShell: { enabled: true, tiers: ['admin'], namespace: SHELL_NS, networkPolicy: LOCAL_EGRESS },
        clusterRBAC: { enabled: true, adminTier: { enabled: true } },
        agentTunnel: {
          url: `https://127.0.0.1:${tunnelPort}`,
          port: tunnelPort,
          caSecret: 'periscope-agent-ca',
          // helm --wait waits for a LoadBalancer's address, which nothing here assigns.
          service: { type: 'ClusterIP' },
        },
        // No PersistentVolume provisioner here: the audit store lives in an emptyDir and the
        // agent CA in a Secret (the chart requires one of the two for the tunnel).
        persistence: { enabled: false },
        // Pods run on the host network here: a free port for the ops listener.
        metrics: { port: metricsPort },
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await diagnose(hub, SERVER_NS)}`);
    }
    await readyNow(`http://127.0.0.1:${metricsPort}/readyz`, () => diagnose(hub, SERVER_NS));
    // readiness and metrics are not on the public port
    expect((await fetch(`${publicURL}/readyz`)).status).toBe(404);
    expect((await fetch(`${publicURL}/metrics`)).status).toBe(404);
    log(`server ready after ${Date.now() - started} ms`);

    // ---- sign in, mint the agent's registration token ----
    cookie = await sessionCookie(publicURL, oidc, OPERATOR);
    const minted = await fetch(`${publicURL}/api/agents/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie },
      body: JSON.stringify({ cluster: 'edge' }),
    });
    expect(minted.status, await minted.clone().text()).toBe(201);
    const { token } = (await minted.json()) as { token: string };

    // ---- the agent chart on edge ----
    await edge.kubectlOk(['create', 'namespace', AGENT_NS]);
    await edge.kubectlOk([
      '-n',
      AGENT_NS,
      'create',
      'secret',
      'generic',
      'periscope-agent-registration',
      `--from-literal=token=${token}`,
    ]);
    try {
      await install(edge, 'periscope-agent', 'periscope-agent', AGENT_NS, {
        agent: {
          serverURL: `https://127.0.0.1:${tunnelPort}`,
          registrationURL: publicURL,
          clusterName: 'edge',
          registrationToken: { existingSecret: 'periscope-agent-registration' },
          healthPort,
        },
        clusterShell: { enabled: true, tiers: ['admin'], namespace: SHELL_NS, networkPolicy: LOCAL_EGRESS },
        clusterRBAC: { enabled: true, adminTier: { enabled: true } },
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await diagnose(edge, AGENT_NS)}`);
    }
    // The agent is ready once its tunnel to the server is up.
    await readyNow(`http://127.0.0.1:${healthPort}/readyz`, () => diagnose(edge, AGENT_NS));
    log(`agent ready after ${Date.now() - started} ms`);
  }, 45 * 60_000); // a cold image build (two mmdebstrap runs, two npm ci) takes minutes

  afterAll(async () => {
    for (const { cluster, release, ns } of installed.reverse()) {
      try {
        // No --wait: a namespace the chart created stays Terminating (there is no namespace
        // controller to finalize it), which helm would wait for.
        await helm(cluster, ['uninstall', release, '--namespace', ns], 180_000);
      } catch (err) {
        log(`uninstall ${release}: ${(err as Error).message}`);
      }
    }
    await Promise.all([hub?.stop(), edge?.stop()]);
    await oidc?.stop();
    rmSync(work, { recursive: true, force: true });
  }, 300_000);

  it('runs the images the charts name, as the charts configure them', async () => {
    const pod = async (
      cluster: TestCluster,
      ns: string,
    ): Promise<{
      spec: { serviceAccountName: string; containers: { image: string }[] };
      status: { phase: string };
    }> =>
      (
        JSON.parse(
          await cluster.kubectlOk([
            '-n',
            ns,
            'get',
            'pods',
            '-l',
            'app.kubernetes.io/instance',
            '-o',
            'json',
          ]),
        ) as { items: never[] }
      ).items[0]!;
    const imageId = async (cluster: TestCluster, ns: string): Promise<string> =>
      (
        await cluster.kubectlOk([
          '-n',
          ns,
          'get',
          'pods',
          '-l',
          'app.kubernetes.io/instance',
          '-o',
          'jsonpath={.items[0].status.containerStatuses[0].imageID}',
        ])
      ).trim();
    // Run from the archives: the node reports the manifest digest it unpacked.
    expect(await imageId(hub!, SERVER_NS)).toBe(
      `${server.repository}@${built.get('periscope-server')!.manifestDigest}`,
    );
    expect(await imageId(edge!, AGENT_NS)).toBe(
      `${agent.repository}@${built.get('periscope-agent')!.manifestDigest}`,
    );
    const s = await pod(hub!, SERVER_NS);
    expect(s.spec.containers[0]!.image).toBe(`${server.repository}:${server.appVersion}`);
    expect(s.spec.serviceAccountName).toBe('periscope');
    expect(s.status.phase).toBe('Running');
    const a = await pod(edge!, AGENT_NS);
    expect(a.spec.containers[0]!.image).toBe(`${agent.repository}:${agent.appVersion}`);
    expect(a.spec.serviceAccountName).toBe('periscope-agent');

    // The server kept the agent CA in the Secret the chart named, through its in-cluster identity.
    const ca = await hub!.kubectl(['-n', SERVER_NS, 'get', 'secret', 'periscope-agent-ca', '-o', 'name']);
    expect(ca.code, ca.stderr).toBe(0);
    // The agent stored its identity in its state Secret with its own ServiceAccount.
    const state = await edge!.kubectl([
      '-n',
      AGENT_NS,
      'get',
      'secret',
      'periscope-agent-state',
      '-o',
      'name',
    ]);
    expect(state.code, state.stderr).toBe(0);
    const writer = edge!
      .auditEvents()
      .find(
        (e) =>
          e.verb === 'create' &&
          e.objectRef?.resource === 'secrets' &&
          e.objectRef.name === 'periscope-agent-state',
      );
    expect(writer?.user.username).toBe(`system:serviceaccount:${AGENT_NS}:periscope-agent`);

    const agents = await fetch(`${publicURL}/api/agents`, { headers: { cookie } });
    expect(agents.status).toBe(200);
    expect(JSON.stringify(await agents.json())).toMatch(
      /"cluster":"edge"[^}]*"connected":true|"connected":true[^}]*"cluster":"edge"/,
    );
  });

  /**
   * One cluster-shell session as the browser runs it (ticket, WebSocket, raw keystrokes):
   * `kubectl auth whoami` shows the operator narrowed to the admin tier, `exit` closes it with 0.
   * Then Periscope's audit, the cluster's audit (who created the session objects, who called as
   * whom) and the cleanup are checked.
   */
  async function shellSession(clusterName: string, cluster: TestCluster, provisioner: string): Promise<void> {
    const res = await fetch(`${publicURL}/api/clusters/${clusterName}/shell/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie },
      body: '{}',
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { sessionId, socketPath } = (await res.json()) as { sessionId: string; socketPath: string };
    const term = new TerminalClient(`${publicURL.replace('http', 'ws')}${socketPath}`, {
      cookie,
      origin: publicURL,
    });
    await term.opened;
    term.control({ type: 'resize', cols: 120, rows: 30 });
    await until(
      'the shell prompt',
      () => term.frames.some((f) => f['type'] === 'status' && f['phase'] === 'attaching') && term.bytes > 0,
      90_000,
    ).catch(async (err: unknown) => {
      throw new Error(
        `${(err as Error).message}; frames ${JSON.stringify(term.frames)}\n${await diagnose(cluster, SHELL_NS)}`,
      );
    });
    term.type('kubectl auth whoami\n');
    await term.waitText('whoami', /Username\s+ada[\s\S]*periscope-tier:admin/, 60_000);
    // The session pod is the shell image: its pinned kubectl and helm (SHA-256 of the contents
    // listing), nano as the editor, the audit wrapper's symlinks, a non-root user.
    const contents = JSON.parse(readFileSync(built.get('periscope-shell')!.contents, 'utf8')) as {
      tools: { sha256: string; path: string }[];
    };
    term.type(
      'echo "uid=$(id -u) editor=$KUBE_EDITOR links=$(readlink /usr/local/bin/kubectl),$(readlink /usr/local/bin/helm)"; sha256sum /opt/periscope/bin/kubectl-real /opt/periscope/bin/helm-real\n',
    );
    await term.waitText(
      'the image checks',
      new RegExp(contents.tools.map((t) => `${t.sha256}  ${t.path}`).join('\\s+')),
      60_000,
    );
    expect(term.text()).toContain('uid=1000 editor=nano links=periscope-audit-exec,periscope-audit-exec');
    term.type('exit\n');
    await term.closed;
    expect(term.frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });

    // Periscope's audit: open and close, the command and its exit status.
    const audit = await until(
      'the close audit event',
      async () => {
        const r = await fetch(`${publicURL}/api/audit?session_id=${sessionId}`, { headers: { cookie } });
        const body = (await r.json()) as {
          events: { verb: string; actor: string; cluster: string; body: Record<string, unknown> }[];
        };
        return body.events.some((e) => e.verb === 'cluster_shell_close') ? body.events : undefined;
      },
      30_000,
    );
    expect(audit.map((e) => e.verb).sort()).toEqual(['cluster_shell_close', 'cluster_shell_open']);
    const close = audit.find((e) => e.verb === 'cluster_shell_close')!;
    expect(close.actor).toBe(OPERATOR);
    expect(close.cluster).toBe(clusterName);
    expect(close.body).toMatchObject({ exit_code: 0, close_reason: 'exit' });
    const commands = close.body['commands'] as { argv: string[]; exit_code: number }[];
    expect(commands.map((c) => [c.argv.slice(1, 3).join(' '), c.exit_code])).toEqual([['auth whoami', 0]]);

    // The cluster's audit: the provisioner's in-cluster ServiceAccount made the session objects;
    // the operator's call came from the session pod, impersonating the operator with one tier group.
    const events = cluster.auditEvents();
    const madeBy = (resource: string): string | undefined =>
      events.find(
        (e) =>
          e.verb === 'create' &&
          e.objectRef?.resource === resource &&
          e.objectRef.namespace === SHELL_NS &&
          e.objectRef.name === `periscope-shell-${sessionId}`,
      )?.user.username;
    expect(madeBy('pods')).toBe(provisioner);
    expect(madeBy('secrets')).toBe(provisioner);
    expect(madeBy('serviceaccounts')).toBe(provisioner);
    const whoami = events.find(
      (e) =>
        e.objectRef?.resource === 'selfsubjectreviews' &&
        e.impersonatedUser?.extra?.['audit.periscope.io/session-id']?.[0] === sessionId,
    );
    // The session's own ServiceAccount: even without the impersonation, the call names the session.
    expect(whoami?.user.username).toBe(`system:serviceaccount:${SHELL_NS}:periscope-shell-${sessionId}`);
    expect(whoami?.impersonatedUser?.username).toBe(OPERATOR);
    expect(whoami?.impersonatedUser?.groups?.filter((g) => g.startsWith('periscope-tier:'))).toEqual([
      'periscope-tier:admin',
    ]);

    // Nothing of the session is left.
    await cluster.waitFor(
      'the session pod, Secret and identity to be gone',
      async () =>
        (
          await cluster.kubectlOk([
            '-n',
            SHELL_NS,
            'get',
            'pods,secrets,serviceaccounts,clusterroles,clusterrolebindings',
            '-l',
            `periscope.io/session-id=${sessionId}`,
            '-o',
            'name',
          ])
        ).trim() === '',
      60_000,
    );
  }

  it('runs a cluster shell on the agent cluster through the helm-installed server and agent', async () => {
    await shellSession('edge', edge!, `system:serviceaccount:${AGENT_NS}:periscope-agent`);
  });

  it('runs a cluster shell on its own cluster through the in-cluster backend', async () => {
    await shellSession('hub', hub!, `system:serviceaccount:${SERVER_NS}:periscope`);
  });

  it('helm uninstall removes the agent and the server, and the agent drops off the server', async () => {
    const gone = async (cluster: TestCluster, ns: string): Promise<void> => {
      await cluster.waitFor(
        `the pods, ReplicaSets and Deployments of ${ns} to be gone`,
        async () =>
          (await cluster.kubectlOk(['-n', ns, 'get', 'deploy,rs,pods', '-o', 'name'])).trim() === '',
        60_000,
      );
    };
    await helm(edge!, ['uninstall', 'periscope-agent', '--namespace', AGENT_NS]);
    installed.splice(
      installed.findIndex((i) => i.release === 'periscope-agent'),
      1,
    );
    await gone(edge!, AGENT_NS);
    await until(
      'the server to see the agent disconnect',
      async () => {
        const r = await fetch(`${publicURL}/api/agents`, { headers: { cookie } });
        return /"connected":false/.test(await r.text());
      },
      60_000,
    );
    await helm(hub!, ['uninstall', 'periscope', '--namespace', SERVER_NS]);
    installed.splice(
      installed.findIndex((i) => i.release === 'periscope'),
      1,
    );
    await gone(hub!, SERVER_NS);
    await expect(fetch(`${publicURL}/healthz`)).rejects.toThrow();
  });
});
